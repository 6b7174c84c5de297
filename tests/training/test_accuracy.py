"""The seed example: LeNet-5 on mnist5k, 2 ranks, reaches 0.95 center test accuracy in 10 epochs."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, horovodrun
from training.metrics import read_jsonl

pytestmark = [pytest.mark.horovod, pytest.mark.slow]


@pytest.mark.parametrize("config", ["lenet-mnist5k-eamsgd.yaml", "lenet-mnist5k-sync.yaml"])
def test_lenet_mnist5k_reaches_095(config, tmp_path, easgd_home):
    out = tmp_path / "run"
    proc = horovodrun(
        2,
        [
            "-m",
            "training",
            "--config",
            str(ROOT / "configs" / config),
            "--out",
            str(out),
            "--no-store",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows[-1]["epoch"] == pytest.approx(10.0)
    evals = [r for r in rows if "center_accuracy" in r]
    assert len({r["step"] for r in evals}) == len(evals)
    best = max(r["center_accuracy"] for r in evals)
    assert best >= 0.95, f"best center accuracy {best:.4f} after 10 epochs"
    assert rows[-1]["center_accuracy"] >= 0.95
