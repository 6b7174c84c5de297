"""The seed example: LeNet-5 on mnist5k, 2 ranks, reaches 0.95 center test accuracy in 10 epochs,
and the run is found by the query the README shows."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from db.store import Store
from tests.support import BIN, ROOT, horovodrun
from training.run.metrics import read_jsonl

pytestmark = [pytest.mark.horovod, pytest.mark.slow]


@pytest.mark.parametrize(
    "config, algorithm",
    [("lenet-mnist5k-eamsgd.yaml", "eamsgd"), ("lenet-mnist5k-sync.yaml", "sync")],
)
def test_lenet_mnist5k_reaches_095(config, algorithm, tmp_path, easgd_home):
    Store().init()
    out = tmp_path / "run"
    proc = horovodrun(
        2,
        ["-m", "training", "--config", str(ROOT / "configs" / config), "--out", str(out)],
        timeout=600,
        plain=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows[-1]["epoch"] == pytest.approx(10.0)
    evals = [r for r in rows if "center_accuracy" in r]
    best = max(r["center_accuracy"] for r in evals)
    assert best >= 0.95, f"best center accuracy {best:.4f} after 10 epochs"
    assert rows[-1]["center_accuracy"] >= 0.95
    query = subprocess.run(
        [
            str(BIN / "easgd"),
            "runs",
            "query",
            f"params.optimizer.algorithm = '{algorithm}' and metrics.center_accuracy >= 0.95",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
    )
    assert query.returncode == 0, query.stderr
    (run,) = json.loads(query.stdout)
    assert run["id"] == "run" and run["status"] == "finished" and run["source"] == "shell"
    assert run["params"]["optimizer.algorithm"] == algorithm
    # Synchronous SGD never uses tau, so its run does not record one; EAMSGD's does.
    assert ("optimizer.tau" in run["params"]) == (algorithm == "eamsgd"), run["params"]
    assert run["metrics"]["center_accuracy"]["value"] == rows[-1]["center_accuracy"]
