"""Whole runs whose communication goes through rank 0's center server, under real horovodrun:
asynchronous EAMSGD, its resume with another number of workers, and synchronous SGD with a
backup worker beside a slow one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support import horovodrun
from training.run.metrics import read_jsonl

pytestmark = pytest.mark.horovod
TINY = str(Path(__file__).with_name("tiny.yaml"))
ASYNC = ["--set", "optimizer.asynchronous=true"]


def _run(np_: int, out: Path, *extra: str):
    proc = horovodrun(
        np_, ["-m", "training", "--config", TINY, "--out", str(out), "--no-store", *extra]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _events(out: Path) -> list[dict]:
    return read_jsonl(out / "events.jsonl")


def test_an_asynchronous_run_records_staleness_and_exports_the_center(tmp_path, easgd_home):
    out = tmp_path / "run"
    _run(2, out, *ASYNC)
    rows = read_jsonl(out / "metrics.jsonl")
    evals = [r for r in rows if "center_accuracy" in r]
    assert [r["step"] for r in evals][:3] == [0, 10, 20] and evals[-1]["step"] == rows[-1]["step"]
    assert all("staleness" in r for r in evals[1:]) and all(r["staleness"] >= 0 for r in evals[1:])
    assert "wait_seconds" in rows[-1] and rows[-1]["bytes_sent"] > 0
    # No collective on the center server: rank 0 logs its own system metrics only.
    assert all(r["system/rank_0/memory_mb"] > 100 for r in evals)
    assert not any("system/rank_1/memory_mb" in r for r in rows)
    # Each worker's exchanges on t mod tau == 0 (tau = 4), all of them counted by the center.
    summary = next(e for e in _events(out) if e["kind"] == "asynchronous")["message"]
    steps = rows[-1]["step"]
    assert summary.count(f"{-(-steps // 4)} exchanges") == 2, summary
    # Only rank 0 saves: the center is the server's.
    last = sorted((out / "checkpoints").iterdir())[-1]
    assert sorted(p.name for p in last.iterdir()) == ["meta.json", "rank-0.npz"]
    assert json.loads((last / "meta.json").read_text())["asynchronous"] is True
    import keras

    from training.schema import DataConfig
    from training.zoo.data import load

    ds = load(DataConfig(dataset="digits"))
    model = keras.models.load_model(out / "center.keras")
    acc = float(np.mean(np.argmax(model.predict(ds.x_test, verbose=0), 1) == ds.y_test))
    assert acc == pytest.approx(evals[-1]["center_accuracy"], abs=1e-9)
    assert evals[-1]["center_accuracy"] > evals[0]["center_accuracy"] + 0.2


def test_an_asynchronous_run_resumes_with_another_number_of_workers(tmp_path, easgd_home):
    out = tmp_path / "run"
    _run(2, out, *ASYNC, "--set", "training.max_steps=20", "--set", "checkpoint.every=10")
    resumed = horovodrun(
        3,
        ["-m", "training", "--resume", str(out), "--no-store"]
        + ["--set", "training.max_steps=40", "--set", "training.epochs=10"],
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "every worker restarts from the center (2 workers before, 3 now)" in resumed.stdout
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(41))
    summary = [e for e in _events(out) if e["kind"] == "asynchronous"][-1]["message"]
    assert "rank 2:" in summary


def test_a_backup_worker_leaves_the_slow_one_behind(tmp_path, easgd_home):
    out = tmp_path / "run"
    _run(
        3,
        out,
        "--set", "optimizer.algorithm=sync",
        "--set", "optimizer.backup_workers=1",
        "--set", "resources.workers=3",
        # Far slower than rank 0, which also evaluates every 10 steps.
        "--set", "resources.slow_ranks={2: 100.0}",
    )  # fmt: skip
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows[-1]["step"] == rows[-1]["epoch"] * 14 and rows[-1]["dropped_gradients"] >= 1
    summary = next(e for e in _events(out) if e["kind"] == "backup_workers")["message"]
    ranks = {part.split(":")[0]: part for part in summary.split("; ")}
    # The slow rank sent fewer gradients than steps: it caught up on the means it missed.
    slow = int(ranks["rank 2"].split(": ")[1].split(" gradients")[0])
    assert slow < rows[-1]["step"] and " 0 late" not in ranks["rank 2"], summary


def test_a_float16_exchange_sends_half_the_bytes_and_still_learns(tmp_path, easgd_home):
    out = tmp_path / "run"
    _run(2, out, *ASYNC, "--set", "optimizer.compression=float16")
    rows = read_jsonl(out / "metrics.jsonl")
    evals = [r for r in rows if "center_accuracy" in r]
    exchanges = -(-rows[-1]["step"] // 4)
    weights = 64 * 32 + 32 + 32 * 10 + 10  # tiny.yaml's MLP on the 8x8 digits
    assert rows[-1]["bytes_sent"] == exchanges * weights * 2
    assert evals[-1]["center_accuracy"] > evals[0]["center_accuracy"] + 0.2


def test_a_sharded_int4_center_on_three_ranks_learns_and_counts_its_codes(tmp_path, easgd_home):
    """The center split over the servers of 3 ranks, int4 codes both ways: the run ends (every
    rank's server outlives rank 0's last reads), the center learns, and each exchange sends
    each shard's codes and scales."""
    from training.center.client import shard_bounds
    from training.center.codes import wire_bytes

    out = tmp_path / "run"
    _run(
        3,
        out,
        *ASYNC,
        "--set",
        "optimizer.center_shards=3",
        "--set",
        "optimizer.compression=int4",
        "--set",
        "resources.workers=3",
    )
    rows = read_jsonl(out / "metrics.jsonl")
    evals = [r for r in rows if "center_accuracy" in r]
    exchanges = -(-rows[-1]["step"] // 4)
    weights = 64 * 32 + 32 + 32 * 10 + 10
    one = sum(wire_bytes(hi - lo, "int4") for lo, hi in shard_bounds(weights, 3))
    assert rows[-1]["bytes_sent"] == exchanges * one < exchanges * weights * 4 / 6
    assert evals[-1]["center_accuracy"] > evals[0]["center_accuracy"] + 0.2
