"""The job queue and the scheduler's lease: what the service writes to plan and supervise jobs.

A job's status changes only through `transition_job`, which can take the lease and close the
job's run in the same transaction; that is what keeps two services, or a cancel and a launch,
from leaving the queue in a state no single step would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.entities import JobRecord, JobStatus, LeaseRecord, RunStatus
from db.errors import InvalidTransition, LeaseHeld, LeaseLost, StoreError
from db.models import Job, Run, ServiceLease
from db.sql import SqlStore, check_run_id, check_source, check_statuses, record

SCHEDULER_LEASE = "scheduler"
_CLOSED_BY_SERVICE = (RunStatus.FAILED, RunStatus.CANCELLED)
_ALLOWED = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED},
    JobStatus.RUNNING: {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED},
}


class JobStore(SqlStore):
    # ----------------------------------------------------------------- jobs
    def create_job(self, **fields: Any) -> JobRecord:
        """A queued job: `fields` are `new_job`'s."""
        job = new_job(**fields)
        with self._write() as s:
            s.add(job)
            s.flush()
            return _job_record(job)

    def get_job(self, job_id: int) -> JobRecord:
        with self._read() as s:
            return _job_record(self._require_job(s, job_id))

    def _require_job(self, s: Session, job_id: int, lock: bool = False) -> Job:
        return self._require_row(s, Job, job_id, "job", lock)

    def list_jobs(
        self, status: Sequence[str] | str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        wanted = check_statuses(status, JobStatus, "job status")
        stmt = select(Job)
        if wanted:
            stmt = stmt.where(Job.status.in_(wanted))
        with self._read() as s:
            rows = s.scalars(stmt.order_by(Job.id.desc()).limit(limit)).all()
            return [_job_record(j) for j in rows]

    def queued_jobs(self) -> list[JobRecord]:
        """Queued jobs in the order the scheduler serves them: priority, then age."""
        with self._read() as s:
            rows = s.scalars(
                select(Job)
                .where(Job.status == JobStatus.QUEUED.value)
                .order_by(Job.priority.desc(), Job.created_at, Job.id)
            ).all()
            return [_job_record(j) for j in rows]

    def transition_job(
        self,
        job_id: int,
        to: JobStatus | str,
        *,
        expected: JobStatus | str | None = None,
        lease_token: str | None = None,
        run_status: RunStatus | None = None,
        run_error: str | None = None,
        **fields: Any,
    ) -> JobRecord:
        """The one way a job's status changes; a terminal status is never left.

        A job asked to cancel is never claimed (queued -> running), and with `expected` the change
        applies only from that status: a cancel and a launch racing each other, in one service
        or two, cannot leave a job marked cancelled while it runs. With `lease_token` the change
        is refused (LeaseLost) unless that token holds the unexpired scheduler lease, checked in
        the same transaction, so a service that lost the lease launches nothing more.

        With `run_status`, the job's run (if it exists and is still running) is closed in the
        same transaction, so no reader sees a cancelled job beside a running run.
        """
        to = JobStatus(to)
        expected = None if expected is None else JobStatus(expected)
        if run_status is not None and RunStatus(run_status) not in _CLOSED_BY_SERVICE:
            raise StoreError(
                "run status: the service closes a run as "
                f"{' or '.join(r.value for r in _CLOSED_BY_SERVICE)} (received: {run_status!r})"
            )
        with self._write() as s:
            if lease_token is not None:
                self._require_lease(s, lease_token)
            job = self._require_job(s, job_id, lock=True)
            current = JobStatus(job.status)
            if current.is_terminal():
                raise InvalidTransition(
                    f"job {job_id} is {current.value} (terminal); it cannot become {to.value}"
                )
            if expected is not None and current is not expected:
                raise InvalidTransition(
                    f"job {job_id} is {current.value}, not {expected.value}; "
                    f"it did not become {to.value}"
                )
            if to not in _ALLOWED[current]:
                raise InvalidTransition(
                    f"job {job_id}: {current.value} -> {to.value} is not a valid transition"
                )
            if to is JobStatus.RUNNING and job.cancel_requested:
                raise InvalidTransition(
                    f"job {job_id} was asked to cancel before it started; it is not launched"
                )
            job.status = to.value
            now = time.time()
            if to is JobStatus.RUNNING:
                job.started_at = now
            if to.is_terminal():
                job.ended_at = now
            self._set_job_fields(job, fields)
            if run_status is not None and job.run_id:
                s.execute(
                    update(Run)
                    .where(Run.id == job.run_id, Run.status == RunStatus.RUNNING.value)
                    .values(status=RunStatus(run_status).value, error=run_error, end_time=now)
                )
            return _job_record(job)

    def update_job(self, job_id: int, **fields: Any) -> JobRecord:
        """Process information, run links and messages; never the status."""
        with self._write() as s:
            job = self._require_job(s, job_id, lock=True)
            self._set_job_fields(job, fields)
            return _job_record(job)

    _JOB_FIELDS = {
        "pid",
        "pid_start_time",
        "launch_token",
        "exit_code",
        "message",
        "log_path",
        "run_id",
        "run_dir",
        "cancel_requested",
        "gpus",
        "hosts",
        "workers",
        "scheduler_job",
        "scheduler_state",
    }

    def _set_job_fields(self, job: Job, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key not in self._JOB_FIELDS:
                raise StoreError(
                    f"job field: one of {', '.join(sorted(self._JOB_FIELDS))} (received: {key!r})"
                )
            setattr(job, key, value)

    def job_for_run(self, run_id: str) -> JobRecord | None:
        with self._read() as s:
            job = s.scalars(select(Job).where(Job.run_id == check_run_id(run_id))).first()
            return _job_record(job) if job else None

    # ----------------------------------------------------------------- the scheduler's lease
    def get_lease(self, name: str = SCHEDULER_LEASE) -> LeaseRecord | None:
        with self._read() as s:
            row = s.get(ServiceLease, name)
            return _lease_record(row) if row else None

    def take_lease(
        self,
        *,
        holder: str,
        token: str,
        pid: int,
        hostname: str,
        ttl: float,
        pid_start_time: float | None = None,
        name: str = SCHEDULER_LEASE,
        now: float | None = None,
        holder_gone: Callable[[LeaseRecord], bool] | None = None,
    ) -> LeaseRecord:
        """Take the lease, or renew it if it is ours; raise LeaseHeld while another holds it.

        It is free when it has no row, has expired, or `holder_gone` says its holder is dead.
        One write transaction (SQLite's BEGIN IMMEDIATE, PostgreSQL's row lock), so two takers
        never both win.
        """
        now = time.time() if now is None else now
        values = {
            "holder": holder,
            "token": token,
            "pid": pid,
            "pid_start_time": pid_start_time,
            "hostname": hostname,
            "acquired_at": now,
            "expires_at": now + ttl,
        }
        with self._write() as s:
            s.execute(
                self._dialect_insert(ServiceLease)
                .values(name=name, **values)
                .on_conflict_do_nothing()
            )
            stmt = select(ServiceLease).where(ServiceLease.name == name)
            if not self._is_sqlite:
                stmt = stmt.with_for_update()
            row = s.scalars(stmt).one()
            if row.token == token:
                row.expires_at = now + ttl
            elif row.expires_at <= now or (holder_gone and holder_gone(_lease_record(row))):
                for key, value in values.items():
                    setattr(row, key, value)
            else:
                raise LeaseHeld(_lease_record(row))
            return _lease_record(row)

    def _require_lease(self, s: Session, token: str, name: str = SCHEDULER_LEASE) -> None:
        # A shared row lock on PostgreSQL: take_lease's FOR UPDATE waits for this transaction.
        stmt = select(ServiceLease).where(ServiceLease.name == name)
        if not self._is_sqlite:
            stmt = stmt.with_for_update(read=True)
        row = s.scalars(stmt).first()
        if row is None or row.token != token or row.expires_at <= time.time():
            raise LeaseLost(
                "this service no longer holds the store's scheduler lease"
                + (f"; {row.holder} (pid {row.pid} on {row.hostname}) does" if row else "")
            )

    def renew_lease(
        self, token: str, ttl: float, name: str = SCHEDULER_LEASE, now: float | None = None
    ) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and was taken)."""
        now = time.time() if now is None else now
        with self._write() as s:
            done = s.execute(
                update(ServiceLease)
                .where(ServiceLease.name == name, ServiceLease.token == token)
                .values(expires_at=now + ttl)
            )
            return done.rowcount == 1

    def release_lease(self, token: str, name: str = SCHEDULER_LEASE) -> None:
        with self._write() as s:
            s.execute(
                delete(ServiceLease).where(ServiceLease.name == name, ServiceLease.token == token)
            )


def new_job(
    *,
    config: dict[str, Any],
    workers: int,
    hosts: str | None = None,
    gpus: str | None = None,
    name: str | None = None,
    priority: int = 0,
    source: str = "api",
) -> Job:
    """A queued job's row, checked, for a transaction to add (a sweep adds its trial with it)."""
    if not isinstance(workers, int) or workers < 1:
        raise StoreError(f"workers: a positive integer (received: {workers!r})")
    return Job(
        name=name,
        status=JobStatus.QUEUED.value,
        priority=priority,
        source=check_source(source, "job source"),
        config=json.dumps(config, sort_keys=True),
        workers=workers,
        hosts=hosts,
        gpus=gpus,
        cancel_requested=False,
        created_at=time.time(),
    )


def _lease_record(row: ServiceLease) -> LeaseRecord:
    return record(LeaseRecord, row)


def _job_record(j: Job) -> JobRecord:
    """The configuration comes back parsed: as the mapping it was queued with, never as text."""
    return record(
        JobRecord,
        j,
        status=JobStatus(j.status),
        config=json.loads(j.config),
        cancel_requested=bool(j.cancel_requested),
    )
