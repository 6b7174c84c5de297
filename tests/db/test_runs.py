"""Runs, parameters, metrics and events (db/runs.py), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time

import pytest

from db.errors import (
    NotFound,
    StoreError,
)
from db.store import Store

PARAMS = {
    "optimizer.algorithm": "eamsgd",
    "optimizer.tau": 10,
    "optimizer.learning_rate": 0.002,
    "model.hidden": [32],
    "data.path": None,
    "workers": 2,
}


def test_run_lifecycle_and_parameters(store):
    run = store.create_run(
        "r1",
        params=PARAMS,
        name="first",
        source="shell",
        run_dir="/x",
        workers=2,
        hosts=1,
        total_steps=100,
        tags={"team": "vision"},
    )
    assert run.status == "running" and run.workers == 2 and run.total_steps == 100
    assert run.params["optimizer.algorithm"] == "eamsgd"
    assert run.params["optimizer.tau"] == "10" and run.params["model.hidden"] == "[32]"
    assert run.params["data.path"] is None and run.tags == {"team": "vision"}
    store.finish_run("r1", "finished")
    done = store.get_run("r1")
    assert done.status == "finished" and done.end_time >= done.start_time
    with pytest.raises(StoreError, match="exists already"):
        store.create_run("r1", params={})


def test_metrics_history_and_latest_summary(store):
    store.create_run("r1", params={})
    assert (
        store.log_metrics(
            "r1", [("loss", 2, 2.0, 0.5), ("loss", 1, 1.0, 0.9), ("acc", 1, 1.0, 0.3)]
        )
        == 3
    )
    store.log_metrics("r1", [("loss", 3, 3.0, 0.7), ("acc", 3, 3.0, float("nan"))])
    run = store.get_run("r1")
    loss = run.metrics["loss"]
    assert (loss.step, loss.value, loss.min, loss.max) == (3, 0.7, 0.5, 0.9)
    assert run.metrics["acc"].value is None and run.metrics["acc"].max == 0.3
    assert run.last_step == 3
    history = store.metric_history("r1", "loss")
    assert [(p.step, p.value) for p in history] == [(1, 0.9), (2, 0.5), (3, 0.7)]
    assert len(store.metric_history("r1")) == 5


def test_bad_input_is_refused_and_nothing_written(store):
    store.create_run("r1", params={})
    with pytest.raises(StoreError, match=r"metric step: .*received: -1"):
        store.log_metrics("r1", [("loss", 1, 0.0, 1.0), ("loss", -1, 0.0, 1.0)])
    with pytest.raises(StoreError, match=r"metric value: .*received: 'high'"):
        store.log_metrics("r1", [("loss", 1, 0.0, "high")])
    with pytest.raises(StoreError, match=r"metric key: .*received: 'a b'"):
        store.log_metrics("r1", [("a b", 1, 0.0, 1.0)])
    assert store.metric_history("r1") == []
    with pytest.raises(StoreError, match=r"run id: .*received: '../etc'"):
        store.create_run("../etc", params={})
    with pytest.raises(NotFound, match="easgd runs list"):
        store.get_run("nope")


def test_resume_drops_history_after_checkpoint_and_rebuilds_summary(store):
    store.create_run("r1", params={})
    store.log_metrics("r1", [("loss", s, float(s), 10.0 - s) for s in range(10)])
    store.finish_run("r1", "failed", "killed")
    store.resume_run("r1", 4, total_steps=20)
    run = store.get_run("r1")
    assert run.status == "running" and run.error is None and run.total_steps == 20
    assert run.metrics["loss"].step == 4 and run.metrics["loss"].min == 6.0
    assert [p.step for p in store.metric_history("r1", "loss")] == [0, 1, 2, 3, 4]


def test_silent_writer_is_shown_lost(store_url):
    # Seconds, not tenths: a loaded machine must not make the fresh run look lost already.
    s = Store(store_url, lost_after=2.0)
    s.init()
    s.create_run("r1", params={})
    assert s.get_run("r1").status == "running"
    time.sleep(2.5)
    assert s.get_run("r1").status == "lost"
    assert [r.id for r in s.search_runs("status = 'lost'")] == ["r1"]
    s.heartbeat("r1")
    assert s.get_run("r1").status == "running"
    s.finish_run("r1", "finished")
    time.sleep(2.5)
    assert s.get_run("r1").status == "finished"  # a finished run is never lost
    s.dispose()


def test_events(store):
    store.create_run("r1", params={})
    store.add_event("r1", "started", "go", 0)
    store.add_event("r1", "evaluated", "center accuracy 0.5", 10)
    assert [(e.kind, e.step) for e in store.events("r1")] == [("started", 0), ("evaluated", 10)]


def test_downsampled_histories_keep_shape_and_last_point(store):
    for i in range(3):
        store.create_run(f"r{i}", params={})
        store.log_metrics(f"r{i}", [("loss", s, s * 0.1, 1.0 / (s + 1)) for s in range(5000)])
    store.create_run("short", params={})
    store.log_metrics("short", [("loss", s, 0.0, 1.0) for s in range(10)])
    out = store.metric_histories(["r0", "r1", "r2", "short"], ["loss", "absent"], max_points=1000)
    for i in range(3):
        points = out[(f"r{i}", "loss")]
        assert 500 < len(points) <= 1000
        steps = [p.step for p in points]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 4999
    assert len(out[("short", "loss")]) == 10
    assert out[("r0", "absent")] == []


def test_get_runs_reads_several_at_once(store):
    store.create_run("a", params={"x": 1}, total_steps=10)
    store.create_run("b", params={})
    store.log_metrics("a", [("loss", 4, 1.0, 0.5)])
    runs = store.get_runs(["a", "b", "missing"])
    assert set(runs) == {"a", "b"}
    assert runs["a"].last_step == 4 and runs["a"].total_steps == 10
    assert runs["a"].params == {"x": "1"} and runs["a"].metrics["loss"].value == 0.5
    assert store.get_runs([]) == {}
    with pytest.raises(StoreError, match="run id"):
        store.get_runs(["../x"])


def test_a_run_cannot_name_a_job_no_row_can_have(store):
    with pytest.raises(StoreError, match="job id"):
        store.create_run("r", params={}, job_id=2**63)
