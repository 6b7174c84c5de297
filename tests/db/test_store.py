"""The store's behaviour, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

from db.entities import JobStatus, RunStatus
from db.store import (
    InvalidTransition,
    LeaseHeld,
    LeaseLost,
    NotFound,
    Store,
    StoreError,
    StoreNotInitialized,
)

PARAMS = {
    "optimizer.algorithm": "eamsgd",
    "optimizer.tau": 10,
    "optimizer.learning_rate": 0.002,
    "model.hidden": [32],
    "data.path": None,
    "workers": 2,
}


def test_init_creates_every_table_once(store):
    assert {
        "runs",
        "params",
        "tags",
        "metrics",
        "latest_metrics",
        "run_events",
        "jobs",
        "service_leases",
        "alembic_version",
    } <= set(store.table_names())
    assert store.init() == "0002"  # idempotent
    store.check()


def test_uninitialized_store_is_refused_with_advice(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(StoreNotInitialized, match="easgd init"):
        s.check()


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
    s = Store(store_url, lost_after=0.5)
    s.init()
    s.create_run("r1", params={})
    assert s.get_run("r1").status == "running"
    time.sleep(0.8)
    assert s.get_run("r1").status == "lost"
    assert [r.id for r in s.search_runs("status = 'lost'")] == ["r1"]
    s.heartbeat("r1")
    assert s.get_run("r1").status == "running"
    s.finish_run("r1", "finished")
    time.sleep(0.8)
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


def test_job_transitions_never_leave_a_terminal_state(store):
    job = store.create_job(config={"seed": 1}, workers=2, name="j", source="cli")
    assert job.status is JobStatus.QUEUED and not job.status.is_terminal()
    running = store.transition_job(job.id, JobStatus.RUNNING, pid=123, pid_start_time=1.5)
    assert running.started_at is not None and running.pid == 123
    with pytest.raises(InvalidTransition, match="not a valid transition"):
        store.transition_job(job.id, JobStatus.QUEUED)
    done = store.transition_job(job.id, "succeeded", exit_code=0)
    assert done.status.is_terminal() and done.ended_at is not None
    for target in JobStatus:
        with pytest.raises(InvalidTransition, match="terminal"):
            store.transition_job(job.id, target)
    with pytest.raises(StoreError, match="job field"):
        store.update_job(job.id, status="queued")
    assert store.get_job(job.id).status is JobStatus.SUCCEEDED


def test_queue_order_is_priority_then_age(store):
    a = store.create_job(config={}, workers=1)
    b = store.create_job(config={}, workers=1, priority=5)
    c = store.create_job(config={}, workers=1)
    store.transition_job(c.id, JobStatus.CANCELLED)
    assert [j.id for j in store.queued_jobs()] == [b.id, a.id]
    assert [j.id for j in store.list_jobs(status="cancelled")] == [c.id]
    with pytest.raises(StoreError, match="job status"):
        store.list_jobs(status="done")


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


def _running_job_with_run(store: Store) -> int:
    job = store.create_job(config={}, workers=2)
    store.transition_job(job.id, JobStatus.RUNNING, run_id=f"job-{job.id}", launch_token="t")
    store.create_run(f"job-{job.id}", params={}, job_id=job.id)
    return job.id


@pytest.mark.parametrize(
    ("job_status", "run_status"),
    [(JobStatus.CANCELLED, RunStatus.CANCELLED), (JobStatus.FAILED, RunStatus.FAILED)],
)
def test_a_job_transition_closes_its_run_in_the_same_transaction(store, job_status, run_status):
    job_id = _running_job_with_run(store)
    store.transition_job(job_id, job_status, run_status=run_status, run_error="why it ended")
    run = store.get_run(f"job-{job_id}")
    assert run.status == run_status.value and run.error == "why it ended"
    assert run.end_time is not None and store.get_job(job_id).status is job_status
    assert [r.id for r in store.search_runs(f"status = '{run_status.value}'")] == [run.id]


def test_a_closed_run_is_never_reopened_by_its_dying_writer(store):
    job_id = _running_job_with_run(store)
    store.transition_job(
        job_id, JobStatus.CANCELLED, run_status=RunStatus.CANCELLED, run_error="cancelled"
    )
    closed = store.get_run(f"job-{job_id}")
    store.finish_run(closed.id, "failed", "KeyboardInterrupt")  # rank 0, dying late
    store.heartbeat(closed.id)
    store.log_metrics(closed.id, [("loss", 7, 1.0, 0.5)])
    run = store.get_run(closed.id)
    assert run.status == "cancelled" and run.error == "cancelled"
    assert run.heartbeat_time == closed.heartbeat_time and run.end_time == closed.end_time


def test_a_job_that_fails_before_its_run_exists_still_fails(store):
    job = store.create_job(config={}, workers=2)
    store.transition_job(job.id, JobStatus.RUNNING, run_id=f"job-{job.id}")
    failed = store.transition_job(
        job.id, JobStatus.FAILED, run_status=RunStatus.FAILED, run_error="no horovodrun"
    )
    assert failed.status is JobStatus.FAILED
    with pytest.raises(NotFound):
        store.get_run(f"job-{job.id}")
    with pytest.raises(StoreError, match="run status"):
        store.transition_job(
            store.create_job(config={}, workers=1).id,
            JobStatus.CANCELLED,
            run_status=RunStatus.RUNNING,
        )


def _take(store: Store, who: str, now: float, **kw):
    return store.take_lease(
        holder=f"http://{who}",
        token=who,
        pid=100 if who == "a" else 200,
        pid_start_time=1.0,
        hostname="h",
        ttl=30.0,
        now=now,
        **kw,
    )


def test_the_scheduler_lease_is_held_renewed_expired_and_released(store):
    assert store.get_lease() is None
    a = _take(store, "a", 1000.0)
    assert (a.holder, a.token, a.pid, a.expires_at) == ("http://a", "a", 100, 1030.0)
    with pytest.raises(LeaseHeld) as refused:
        _take(store, "b", 1010.0)
    assert refused.value.lease.holder == "http://a" and refused.value.lease.pid == 100
    assert store.renew_lease("a", ttl=30.0, now=1020.0)
    with pytest.raises(LeaseHeld):
        _take(store, "b", 1049.0)  # renewed at 1020: held until 1050
    assert _take(store, "a", 1049.0).token == "a"  # taking one's own lease again renews it
    b = _take(store, "b", 1080.0)  # a stopped renewing: expired at 1079
    assert b.token == "b" and store.get_lease().holder == "http://b"
    assert not store.renew_lease("a", ttl=30.0, now=1081.0)  # a has lost it
    store.release_lease("a")  # not a's to release
    assert store.get_lease().token == "b"
    store.release_lease("b")
    assert store.get_lease() is None
    assert _take(store, "a", 1082.0).token == "a"


def test_a_lease_whose_holder_is_gone_is_taken_at_once(store):
    _take(store, "a", 1000.0)
    seen = []

    def gone(lease) -> bool:
        seen.append(lease.pid)
        return True

    assert _take(store, "b", 1001.0, holder_gone=gone).token == "b"
    assert seen == [100]
    with pytest.raises(LeaseHeld):
        _take(store, "a", 1002.0, holder_gone=lambda lease: False)


def test_only_one_of_many_concurrent_takers_gets_the_lease(store_url):
    Store(store_url).init()
    stores = [Store(store_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def take(i: int) -> str:
        barrier.wait()
        try:
            _take(stores[i], f"s{i}", 1000.0)
            return "won"
        except LeaseHeld:
            return "refused"

    with ThreadPoolExecutor(len(stores)) as pool:
        outcomes = list(pool.map(take, range(len(stores))))
    assert sorted(outcomes) == ["refused"] * (len(stores) - 1) + ["won"]
    winner = outcomes.index("won")
    assert stores[0].get_lease().token == f"s{winner}"
    for s in stores:
        s.dispose()


def test_a_queued_job_asked_to_cancel_is_never_claimed(store):
    job = store.create_job(config={}, workers=2)
    store.update_job(job.id, cancel_requested=True)
    with pytest.raises(InvalidTransition, match="cancel"):
        store.transition_job(job.id, JobStatus.RUNNING, launch_token="t")
    assert store.get_job(job.id).status is JobStatus.QUEUED
    assert store.get_job(job.id).launch_token is None


def test_a_queued_cancel_applies_only_to_a_job_still_queued(store):
    job = store.create_job(config={}, workers=2)
    store.transition_job(job.id, JobStatus.RUNNING, launch_token="t")
    with pytest.raises(InvalidTransition, match="running, not queued"):
        store.transition_job(job.id, JobStatus.CANCELLED, expected=JobStatus.QUEUED)
    assert store.get_job(job.id).status is JobStatus.RUNNING
    other = store.create_job(config={}, workers=2)
    done = store.transition_job(other.id, JobStatus.CANCELLED, expected=JobStatus.QUEUED)
    assert done.status is JobStatus.CANCELLED


def test_a_claim_by_a_service_that_no_longer_holds_the_lease_is_refused(store):
    now = time.time()
    _take(store, "a", now)
    job = store.create_job(config={}, workers=2)
    with pytest.raises(LeaseLost, match="lease"):
        store.transition_job(job.id, JobStatus.RUNNING, lease_token="b")
    store.release_lease("a")
    _take(store, "b", now - 100.0)  # taken long ago, never renewed: expired
    with pytest.raises(LeaseLost, match="lease"):
        store.transition_job(job.id, JobStatus.RUNNING, lease_token="b")
    assert store.get_job(job.id).status is JobStatus.QUEUED
    assert store.renew_lease("b", ttl=30.0)
    claimed = store.transition_job(job.id, JobStatus.RUNNING, lease_token="b")
    assert claimed.status is JobStatus.RUNNING


@pytest.mark.parametrize("job_id", [0, -1, 2**63, 2**64, 10**30])
def test_ids_no_row_can_have_are_not_found(store, job_id):
    with pytest.raises(NotFound, match="no job"):
        store.get_job(job_id)
    with pytest.raises(NotFound, match="no job"):
        store.update_job(job_id, message="x")
    with pytest.raises(NotFound, match="no job"):
        store.transition_job(job_id, JobStatus.CANCELLED)


def test_a_run_cannot_name_a_job_no_row_can_have(store):
    with pytest.raises(StoreError, match="job id"):
        store.create_run("r", params={}, job_id=2**63)


def test_rank_0_closing_its_run_never_overwrites_a_cancel_committed_meanwhile(store_url):
    """The cancel commits from another connection just before rank 0's UPDATE. Where it can
    (PostgreSQL), the run stays cancelled; where it must wait (SQLite's one writer), rank 0's
    close came first and stands. Never a cancelled job beside a run rank 0 reopened."""
    Store(store_url).init()
    rank0, service = Store(store_url), Store(store_url)
    job_id = _running_job_with_run(service)
    run_id = f"job-{job_id}"
    cancelled = threading.Event()

    def cancel() -> None:
        service.transition_job(
            job_id, JobStatus.CANCELLED, run_status=RunStatus.CANCELLED, run_error="cancelled"
        )
        cancelled.set()

    threads: list[threading.Thread] = []

    @event.listens_for(rank0.engine, "before_cursor_execute")
    def cancel_first(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE RUNS") and not threads:
            threads.append(threading.Thread(target=cancel))
            threads[0].start()
            threads[0].join(timeout=2)

    rank0.finish_run(run_id, "failed", "KeyboardInterrupt")
    threads[0].join()
    cancel_came_first = cancelled.is_set() and rank0.engine.dialect.name == "postgresql"
    run = service.get_run(run_id)
    assert service.get_job(job_id).status is JobStatus.CANCELLED
    if cancel_came_first:
        assert (run.status, run.error) == ("cancelled", "cancelled")
    else:
        assert (run.status, run.error) == ("failed", "KeyboardInterrupt")
    with pytest.raises(NotFound):
        rank0.finish_run("missing", "finished")
    rank0.dispose()
    service.dispose()
