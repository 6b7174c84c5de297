"""Training writes into the run store: under horovodrun, three jobs at once, failures, lost runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from db.store import Store
from tests.support import BIN, QUIET_TF, ROOT, horovodrun
from training.launch.argv import horovodrun_argv
from training.run.metrics import read_jsonl

pytestmark = pytest.mark.horovod
TINY = str(Path(__file__).with_name("tiny.yaml"))


def _values_in(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in read_jsonl(path):
        for key in row:
            if key not in ("step", "wall_time"):
                counts[key] = counts.get(key, 0) + 1
    return counts


def test_horovodrun_records_the_run(store, tmp_path):
    out = tmp_path / "run"
    proc = horovodrun(
        2,
        ["-m", "training", "--config", TINY, "--out", str(out)],
        env={"EASGD_HOME": os.environ["EASGD_HOME"]},
        plain=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = store.search_runs("params.optimizer.algorithm = 'eamsgd'")
    assert run.id == "run" and run.source == "shell" and run.status == "finished"
    assert run.workers == 2 and run.params["workers"] == "2" and run.run_dir == str(out)
    assert run.params["optimizer.tau"] == "4" and run.last_step == run.total_steps == 44
    expected = _values_in(out / "metrics.jsonl")
    for key, count in expected.items():
        assert len(store.metric_history(run.id, key)) == count, key
    assert [e.kind for e in store.events(run.id)][0] == "started"
    assert store.events(run.id)[-1].kind == "finished"
    # Every rank's system metrics reach rank 0 at each evaluation; no GPU, no GPU figures.
    evaluations = len(store.metric_history(run.id, "center_accuracy"))
    for rank in (0, 1):
        memory = store.metric_history(run.id, f"system/rank_{rank}/memory_mb")
        cpu = store.metric_history(run.id, f"system/rank_{rank}/cpu_percent")
        assert len(memory) == len(cpu) == evaluations
        assert all(100 < m.value < 16000 for m in memory)  # a TensorFlow process: MBs, not GBs
        assert all(0 <= c.value <= 100 * (os.cpu_count() or 1) for c in cpu)
        assert max(c.value for c in cpu) > 0
    assert not store.metric_history(run.id, "system/rank_0/gpu_percent")
    cli = subprocess.run(
        [
            str(BIN / "easgd"),
            "runs",
            "query",
            "params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.3",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert cli.returncode == 0, cli.stderr
    (shown,) = json.loads(cli.stdout)
    assert shown["id"] == "run" and shown["params"]["optimizer.algorithm"] == "eamsgd"
    assert shown["metrics"]["center_accuracy"]["value"] == run.metrics["center_accuracy"].value


def test_three_training_processes_share_one_sqlite_store(store, tmp_path):
    procs = []
    for i in range(3):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "training",
                    "--config",
                    TINY,
                    "--out",
                    str(tmp_path / f"r{i}"),
                    "--set",
                    "training.epochs=4",
                    "--set",
                    f"seed={i}",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **QUIET_TF},
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert "database is locked" not in err and "warning" not in err
    for i in range(3):
        run = store.get_run(f"r{i}")
        assert run.status == "finished"
        total = sum(len(store.metric_history(run.id, k)) for k in run.metrics)
        assert total == sum(_values_in(tmp_path / f"r{i}" / "metrics.jsonl").values())


def test_failed_run_records_the_error(store, tmp_path):
    out = tmp_path / "bad"
    proc = horovodrun(
        2, ["-m", "training", "--config", TINY, "--out", str(out), "--set", "optimizer.alpha=10000"]
    )
    assert proc.returncode != 0
    run = store.get_run("bad")
    assert run.status == "failed" and "diverged" in run.error
    assert store.events("bad")[-1].kind == "failed"


def test_killed_writer_is_shown_lost(easgd_home, tmp_path):
    store = Store(lost_after=3)
    store.init()
    cmd = horovodrun_argv(
        2,
        [
            sys.executable,
            "-m",
            "training",
            "--config",
            TINY,
            "--out",
            str(tmp_path / "victim"),
            "--set",
            "training.epochs=400",
        ],
        pin_loopback=False,
    )
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **QUIET_TF, "EASGD_HEARTBEAT_SECONDS": "0.5"},
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            runs = store.search_runs("run_id = 'victim' and last_step >= 5")
            if runs:
                break
            time.sleep(0.5)
        assert runs and runs[0].status == "running"
        time.sleep(4)
        assert store.get_run("victim").status == "running"  # heartbeats keep it alive
        ranks = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "training" in " ".join(p.cmdline())
        ]
        assert ranks
        for p in ranks:
            p.send_signal(signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    time.sleep(4)
    assert store.get_run("victim").status == "lost"
    assert [r.id for r in store.search_runs("status = 'lost'")] == ["victim"]
