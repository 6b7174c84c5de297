"""Issue 11 under real horovodrun: sync all-reduce with LARS inside, the rate scaled linearly
with the 2 ranks and warmed up over 5 steps, logged as it is used, and resumed exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import horovodrun
from training.run.metrics import read_jsonl

pytestmark = pytest.mark.horovod
TINY = str(Path(__file__).with_name("tiny.yaml"))
BASE = 0.5
LARGE_BATCH = [
    "--set",
    "optimizer.algorithm=sync",
    "--set",
    "optimizer.inner=lars",
    "--set",
    f"optimizer.learning_rate={BASE}",
    "--set",
    "optimizer.lr_scaling=linear",
    "--set",
    "optimizer.warmup_steps=5",
    "--set",
    "optimizer.lars_weight_decay=0.0005",
    "--set",
    "training.eval_every=4",
]


def test_sync_lars_with_linear_scaling_and_warmup(tmp_path, easgd_home):
    import keras

    whole, split = tmp_path / "whole", tmp_path / "split"
    common = ["-m", "training", "--config", TINY, "--no-store", *LARGE_BATCH]
    proc = horovodrun(2, [*common, "--out", str(whole), "--set", "training.max_steps=12"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(whole / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(13))
    lr = [r["learning_rate"] for r in rows[1:]]
    # Step s (1-based) used the rate of 0-based index s - 1: 0.5 (1 + t / 5), then 2 x 0.5.
    expected = [0.5, 0.6, 0.7, 0.8, 0.9] + [1.0] * 7
    assert lr == pytest.approx(expected, rel=1e-6), lr
    assert all(np.isfinite(r["train_loss"]) for r in rows[1:])
    assert "center_accuracy" in rows[-1]
    keras.models.load_model(whole / "center.keras")

    # Stopped in the middle of the warm-up and resumed: the same rates and the same losses.
    first = horovodrun(2, [*common, "--out", str(split), "--set", "training.max_steps=3"])
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = horovodrun(
        2,
        ["-m", "training", "--resume", str(split), "--no-store", "--set", "training.max_steps=12"],
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = read_jsonl(split / "metrics.jsonl")
    assert [r["step"] for r in again] == list(range(13))
    assert [r["learning_rate"] for r in again[1:]] == pytest.approx(expected, rel=1e-6)
    for a, b in zip(rows[1:], again[1:]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6, abs=1e-9), a["step"]
