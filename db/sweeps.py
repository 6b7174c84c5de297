"""Sweeps and their trials: what the job service records to run a hyperparameter search.

A trial is created with its job in one transaction, so that no job of a sweep exists without
its trial (or the reverse) whatever stops the service between the two. A trial's state changes
only through `transition_trial`, which never leaves a terminal state; a sweep's status likewise
through `end_sweep`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.entities import JobStatus, SweepRecord, SweepStatus, TrialRecord, TrialState
from db.errors import InvalidTransition, NotFound, StoreError
from db.jobs import new_job
from db.models import Job, Run, RunEvent, Sweep, SweepTrial
from db.sql import SqlStore, check_key, check_source, check_statuses, record

_TRIAL_ALLOWED = {
    TrialState.QUEUED: {TrialState.RUNNING, TrialState.FAILED, TrialState.CANCELLED},
    TrialState.RUNNING: {
        TrialState.SUCCEEDED,
        TrialState.FAILED,
        TrialState.STOPPED_EARLY,
        TrialState.CANCELLED,
    },
}
_GOALS = ("maximize", "minimize")


class SweepStore(SqlStore):
    # ----------------------------------------------------------------- sweeps
    def create_sweep(
        self,
        *,
        method: str,
        metric: str,
        goal: str,
        seed: int,
        run_cap: int,
        concurrency: int,
        spec: dict[str, Any],
        base_config: dict[str, Any],
        name: str | None = None,
        source: str = "api",
    ) -> SweepRecord:
        check_key(metric, "metric name")
        if goal not in _GOALS:
            raise StoreError(f"goal: maximize or minimize (received: {goal!r})")
        for what, n in (("run_cap", run_cap), ("concurrency", concurrency)):
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 2**31 - 1:
                raise StoreError(f"{what}: a positive integer (received: {n!r})")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise StoreError(f"seed: an integer from 0 to 2**63 - 1 (received: {seed!r})")
        with self._write() as s:
            row = Sweep(
                name=name,
                status=SweepStatus.RUNNING.value,
                method=method,
                metric=metric,
                goal=goal,
                seed=seed,
                run_cap=run_cap,
                concurrency=concurrency,
                source=check_source(source, "sweep source"),
                spec=json.dumps(spec),
                base_config=json.dumps(base_config),
                stop_requested=False,
                created_at=time.time(),
            )
            s.add(row)
            s.flush()
            return _sweep_record(row, [])

    def _require_sweep(self, s: Session, sweep_id: int, lock: bool = False) -> Sweep:
        return self._require_row(s, Sweep, sweep_id, "sweep", lock)

    def get_sweep(self, sweep_id: int) -> SweepRecord:
        with self._read() as s:
            row = self._require_sweep(s, sweep_id)
            return _sweep_record(row, self._trials(s, [row.id])[row.id])

    def list_sweeps(
        self, status: Sequence[str] | str | None = None, limit: int = 100
    ) -> list[SweepRecord]:
        """Newest first, each with its trials."""
        wanted = check_statuses(status, SweepStatus, "sweep status")
        if not isinstance(limit, int) or not 1 <= limit <= 100000:
            raise StoreError(f"limit: an integer from 1 to 100000 (received: {limit!r})")
        stmt = select(Sweep)
        if wanted:
            stmt = stmt.where(Sweep.status.in_(wanted))
        with self._read() as s:
            rows = s.scalars(stmt.order_by(Sweep.id.desc()).limit(limit)).all()
            trials = self._trials(s, [r.id for r in rows])
            return [_sweep_record(r, trials[r.id]) for r in rows]

    def _trials(self, s: Session, sweep_ids: list[int]) -> dict[int, list[TrialRecord]]:
        out: dict[int, list[TrialRecord]] = {i: [] for i in sweep_ids}
        if sweep_ids:
            rows = s.scalars(
                select(SweepTrial)
                .where(SweepTrial.sweep_id.in_(sweep_ids))
                .order_by(SweepTrial.sweep_id, SweepTrial.number)
            )
            for t in rows:
                out[t.sweep_id].append(_trial_record(t))
        return out

    def request_sweep_stop(self, sweep_id: int) -> SweepRecord:
        """Ask a sweep to stop: the service cancels its trials and ends it on its next pass. A
        sweep that ended already is returned as it is."""
        with self._write() as s:
            row = self._require_sweep(s, sweep_id, lock=True)
            if not SweepStatus(row.status).is_terminal():
                row.stop_requested = True
        return self.get_sweep(sweep_id)

    def end_sweep(
        self, sweep_id: int, status: SweepStatus | str, message: str | None = None
    ) -> SweepRecord:
        status = SweepStatus(status)
        if not status.is_terminal():
            raise StoreError(f"a sweep ends finished, stopped or failed (received: {status!r})")
        with self._write() as s:
            row = self._require_sweep(s, sweep_id, lock=True)
            if SweepStatus(row.status).is_terminal():
                raise InvalidTransition(
                    f"sweep {sweep_id} is {row.status} (terminal); it cannot become {status.value}"
                )
            row.status, row.message, row.ended_at = status.value, message, time.time()
        return self.get_sweep(sweep_id)

    # ----------------------------------------------------------------- trials
    def add_trial(
        self,
        sweep_id: int,
        number: int,
        params: dict[str, Any],
        *,
        job: dict[str, Any] | None,
        optuna_number: int | None = None,
        message: str | None = None,
    ) -> TrialRecord:
        """A queued trial and its job (`job`: the arguments of `create_job`) in one transaction;
        with `job` None, a trial that failed before any job (its configuration was refused)."""
        params_text = _json(params, "trial params")
        with self._write() as s:
            sweep = self._require_sweep(s, sweep_id, lock=True)
            if SweepStatus(sweep.status).is_terminal():
                raise InvalidTransition(f"sweep {sweep_id} is {sweep.status}; it takes no trial")
            if sweep.stop_requested:
                raise InvalidTransition(f"sweep {sweep_id} is stopping; it takes no trial")
            job_row = None
            if job is not None:
                job_row = new_job(**job)
                s.add(job_row)
                s.flush()
            now = time.time()
            trial = SweepTrial(
                sweep_id=sweep_id,
                number=number,
                state=(TrialState.QUEUED if job_row else TrialState.FAILED).value,
                params=params_text,
                job_id=job_row.id if job_row else None,
                optuna_number=optuna_number,
                message=message,
                created_at=now,
                ended_at=None if job_row else now,
            )
            s.add(trial)
            s.flush()
            return _trial_record(trial)

    def transition_trial(
        self,
        trial_id: int,
        to: TrialState | str,
        *,
        value: float | None = None,
        message: str | None = None,
        run_id: str | None = None,
    ) -> TrialRecord:
        """The one way a trial's state changes; a terminal state is never left."""
        to = TrialState(to)
        with self._write() as s:
            trial = self._lock_trial(s, trial_id)
            current = TrialState(trial.state)
            if current.is_terminal():
                raise InvalidTransition(
                    f"trial {trial.number} of sweep {trial.sweep_id} is {current.value} "
                    f"(terminal); it cannot become {to.value}"
                )
            if to is not current and to not in _TRIAL_ALLOWED[current]:
                raise InvalidTransition(
                    f"trial {trial.number} of sweep {trial.sweep_id}: {current.value} -> "
                    f"{to.value} is not a valid transition"
                )
            trial.state = to.value
            if value is not None:
                trial.value = _finite(value)
            if message is not None:
                trial.message = message
            if run_id is not None:
                trial.run_id = run_id
            if to.is_terminal():
                trial.ended_at = time.time()
            return _trial_record(trial)

    def stop_trial_early(self, trial_id: int, why: str) -> TrialRecord:
        """Mark a running trial as stopped by the sweep's rule (`why` is its message), ask its
        job to cancel, and note the stop on its run at the run's last step, all in one
        transaction: a trial is never judged without its job being asked to end."""
        with self._write() as s:
            trial = self._lock_trial(s, trial_id)
            if trial.state != TrialState.RUNNING.value or trial.message:
                raise InvalidTransition(
                    f"trial {trial.number} of sweep {trial.sweep_id} is {trial.state}"
                    f"{' and already stopping' if trial.message else ''}; it cannot be stopped early"
                )
            job = self._require_row(s, Job, trial.job_id, "job", True) if trial.job_id else None
            trial.message = why
            if job is not None and job.status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
                job.cancel_requested = True
            run_id = trial.run_id or (job.run_id if job else None)
            run = s.get(Run, run_id) if run_id else None
            if run is not None:
                s.add(
                    RunEvent(
                        run_id=run.id,
                        time=time.time(),
                        kind="stopped_early",
                        step=run.last_step,
                        message=f"sweep {trial.sweep_id}: {why}",
                    )
                )
            return _trial_record(trial)

    def _lock_trial(self, s: Session, trial_id: int) -> SweepTrial:
        stmt = select(SweepTrial).where(SweepTrial.id == trial_id)
        trial = s.scalars(stmt if self._is_sqlite else stmt.with_for_update()).first()
        if trial is None:
            raise NotFound(f"no trial {trial_id}")
        return trial


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what}: JSON values only ({exc})") from None


def _finite(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _trial_record(t: SweepTrial) -> TrialRecord:
    return record(TrialRecord, t, state=TrialState(t.state), params=json.loads(t.params))


def _sweep_record(row: Sweep, trials: list[TrialRecord]) -> SweepRecord:
    return record(
        SweepRecord,
        row,
        status=SweepStatus(row.status),
        spec=json.loads(row.spec),
        base_config=json.loads(row.base_config),
        stop_requested=bool(row.stop_requested),
        trials=trials,
    )
