"""The job queue and the scheduler's lease (db/jobs.py), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

from db.entities import JobStatus, RunStatus
from db.errors import (
    InvalidTransition,
    LeaseHeld,
    LeaseLost,
    NotFound,
    StoreError,
)
from db.store import Store


def test_job_transitions_never_leave_a_terminal_state(store):
    job = store.create_job(config={"seed": 1}, workers=2, name="j", source="cli")
    assert job.status is JobStatus.QUEUED and not job.status.is_terminal()
    # The configuration comes back as the mapping it was queued with, never as JSON text.
    assert job.config == store.get_job(job.id).config == {"seed": 1}
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
