"""A run resumed with another number of workers, under real horovodrun: each kind of algorithm
restarts every worker from one state (rank 0's for sync, the center, the workers' mean), says
so, and records its world size over time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import horovodrun
from training.run.metrics import read_jsonl

pytestmark = pytest.mark.horovod
TINY = str(Path(__file__).with_name("tiny.yaml"))


@pytest.mark.parametrize(
    ("algorithm", "before", "after", "rule"),
    [
        ("eamsgd", 2, 3, "every worker restarts from the center"),
        ("sync", 2, 1, "every worker restarts from rank 0's weights and optimizer state"),
        ("cdsgd", 3, 2, "every worker restarts from the mean of the 3 workers' weights"),
    ],
)
def test_a_resume_with_other_workers_restarts_from_one_state(
    tmp_path, easgd_home, algorithm, before, after, rule
):
    out = tmp_path / "run"
    common = [
        "--no-store",
        "--set",
        f"optimizer.algorithm={algorithm}",
        "--set",
        "training.epochs=20",
    ]
    first = horovodrun(
        before,
        ["-m", "training", "--config", TINY, "--out", str(out), *common]
        + ["--set", "training.max_steps=20", "--set", f"resources.workers={before}"],
    )
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = horovodrun(
        after,
        ["-m", "training", "--resume", str(out), *common, "--set", "training.max_steps=40"],
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert f"{rule} ({before} workers before, {after} now)" in resumed.stdout
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(41))
    sizes = [(r["step"], r["workers"]) for r in rows if "workers" in r]
    assert sizes == [(0, before), (10, before), (20, before), (30, after), (40, after)]
    # Training goes on from where it was: nothing of what was learnt is lost at the resume.
    accuracy = {r["step"]: r["center_accuracy"] for r in rows if "center_accuracy" in r}
    assert accuracy[40] >= accuracy[20] - 0.02 and accuracy[40] > accuracy[0]
