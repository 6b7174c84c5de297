"""The sweep driver: runs each sweep's trials as ordinary jobs of the service.

On every pass, for each running sweep, it reads the store (never its own memory) and
1. follows each trial's job: queued, running, then the trial's end with its final metric;
2. stops poor trials early: their runs' metric curves, as rank 0 records them at each
   evaluation, go to the sweep's rule, and a trial it stops is recorded so, its job cancelled;
3. on a stop request, cancels the sweep's trials and ends it once their jobs have ended;
4. makes new trials while fewer than `concurrency` jobs are queued or running and the run cap
   is not reached: the parameters from the sweep's method, set into the base configuration and
   validated as any job is, then the trial and its job written in one transaction;
5. ends the sweep once every trial has ended.

State lives in the store, so a service that restarts goes on where it stopped. Only a service
holding the store's scheduler lease drives sweeps, as only it launches jobs. Jobs are cancelled
by the flag the supervisor acts on in its own pass, as when a user cancels.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db.entities import JobRecord, JobStatus, SweepRecord, SweepStatus, TrialRecord, TrialState
from db.errors import EasgdError, InvalidTransition, NotFound
from db.settings import home
from db.store import Store
from service.settings import ServiceSettings
from service.submission import prepare
from service.sweeps.sampling import TpeSearch, grid_params, random_params
from service.sweeps.space import Dimension
from service.sweeps.spec import (
    SweepError,
    ValidSweep,
    dimensions,
    parse_sweep_data,
    trial_name,
    validate_sweep,
    with_values,
)
from service.sweeps.stopping import Curve, to_stop
from training.schema import ConfigError, ExperimentConfig

STOPPED_MESSAGE = "the sweep was stopped"
FAILED_MESSAGE = "the sweep failed"
# Passes of one sweep that fail in a row before it is ended as failed: a store away for a
# moment fails a pass or two, a sweep the service cannot go on with fails them all.
MAX_FAILED_PASSES = 5
_JOB_TO_TRIAL = {
    JobStatus.SUCCEEDED: TrialState.SUCCEEDED,
    JobStatus.FAILED: TrialState.FAILED,
    JobStatus.CANCELLED: TrialState.CANCELLED,
}

Placement = Callable[[ExperimentConfig], str | None]


def optuna_path(sweep_id: int) -> Path:
    """Optuna's own SQLite file for one sweep, in the data directory, apart from the store."""
    return home() / "sweeps" / f"sweep-{sweep_id}" / "optuna.db"


class SweepDriver:
    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        placement: Placement,
        may_schedule: Callable[[], bool],
        wake_scheduler: Callable[[], None],
    ):
        self.store = store
        self.settings = settings
        self._placement = placement
        self._may_schedule = may_schedule
        self._wake_scheduler = wake_scheduler
        self._tpe: dict[int, TpeSearch] = {}
        self._ended_curves: dict[int, list[float | None]] = {}
        self._ended_jobs: set[int] = set()
        self._failures: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ requests
    def create(
        self, data: Any, base: dict[str, Any] | str | None, source: str = "api"
    ) -> tuple[SweepRecord, list[str]]:
        """Validate a sweep whole and record it; its trials start on the next pass."""
        valid = self.validate(data, base)
        spec = valid.spec
        sweep = self.store.create_sweep(
            name=spec.name,
            method=spec.method,
            metric=spec.metric.name,
            goal=spec.metric.goal,
            seed=valid.seed,
            run_cap=valid.run_cap,
            concurrency=spec.concurrency,
            spec=valid.stored_spec(),
            base_config=valid.base,
            source=source,
        )
        self.wake()
        return sweep, valid.warnings

    def validate(self, data: Any, base: dict[str, Any] | str | None) -> ValidSweep:
        return validate_sweep(
            data, base, self.settings.data_dirs, self._placement, self.settings.slots
        )

    def stop_sweep(self, sweep_id: int) -> SweepRecord:
        sweep = self.store.request_sweep_stop(sweep_id)
        self.wake()
        return sweep

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="easgd-sweeps", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()

    def tick(self) -> None:
        """One pass over the running sweeps; a sweep that fails a pass does not stop the
        others, and is tried again on the next."""
        with self._lock:
            if not self._may_schedule():
                return
            try:
                sweeps = self.store.list_sweeps(status=SweepStatus.RUNNING, limit=100000)
            except Exception as exc:  # noqa: BLE001 - the store may be away for a moment
                print(f"easgd service: sweeps: {exc!r}", file=sys.stderr, flush=True)
                return
            for sweep in sweeps:
                try:
                    self._advance(sweep)
                    self._failures.pop(sweep.id, None)
                except SweepError as exc:  # its stored file no longer parses: it never will
                    self._fail(sweep, f"its sweep file is refused now: {exc}")
                except Exception as exc:  # noqa: BLE001 - one sweep must not stop the others
                    print(f"easgd service: sweep {sweep.id}: {exc!r}", file=sys.stderr, flush=True)
                    self._failures[sweep.id] = n = self._failures.get(sweep.id, 0) + 1
                    if n >= MAX_FAILED_PASSES:
                        self._fail(sweep, f"{n} passes in a row failed, the last with {exc!r}")

    # ------------------------------------------------------------------ one sweep
    def _advance(self, sweep: SweepRecord) -> None:
        spec = parse_sweep_data(sweep.spec)
        tpe = self._search(sweep) if spec.method == "tpe" else None
        # Jobs of trials that ended are known to have ended: only the others are read.
        jobs = {
            t.job_id: self.store.get_job(t.job_id)
            for t in sweep.trials
            if t.job_id and t.job_id not in self._ended_jobs
        }
        trials = [self._follow(sweep, t, jobs.get(t.job_id), tpe) for t in sweep.trials]
        for t in trials:
            if t.state.is_terminal() and t.job_id in jobs and jobs[t.job_id].status.is_terminal():
                self._ended_jobs.add(t.job_id)
        active = [t for t in trials if t.job_id in jobs and not jobs[t.job_id].status.is_terminal()]
        if sweep.stop_requested:
            self._cancel(sweep, trials, jobs, tpe)
            if not active:
                self._end(sweep, SweepStatus.STOPPED, trials)
            return
        for t in trials:
            job = jobs.get(t.job_id) if t.job_id else None
            if t.state is TrialState.RUNNING and t.message and job and not job.cancel_requested:
                self._cancel_job(job)  # a stop once recorded without its cancel is completed
        if spec.early_terminate:
            self._stop_poor(sweep, spec.early_terminate, trials, jobs)
        dims = dimensions(spec)
        made = len(trials)
        exhausted = False
        while len(active) < sweep.concurrency and made < sweep.run_cap:
            trial = self._new_trial(sweep, dims, made, tpe)
            if trial is None:
                exhausted = True
                break
            made += 1
            trials.append(trial)
            if trial.job_id:
                active.append(trial)
        if (made >= sweep.run_cap or exhausted) and not active:
            if all(t.state.is_terminal() for t in trials):
                self._end(sweep, SweepStatus.FINISHED, trials)

    def _search(self, sweep: SweepRecord) -> TpeSearch:
        tpe = self._tpe.get(sweep.id)
        if tpe is None:
            tpe = TpeSearch(
                optuna_path(sweep.id),
                f"sweep-{sweep.id}-{sweep.created_at:.0f}",
                sweep.goal,
                sweep.seed,
                sweep.run_cap,
                dimensions(parse_sweep_data(sweep.spec)),
            )
            tpe.reconcile(sweep.trials)
            self._tpe[sweep.id] = tpe
        return tpe

    def _follow(
        self, sweep: SweepRecord, t: TrialRecord, job: JobRecord | None, tpe: TpeSearch | None
    ) -> TrialRecord:
        """The trial brought up to its job's state."""
        if t.state.is_terminal() or job is None:
            return t
        if job.status is JobStatus.QUEUED:
            return t
        if t.state is TrialState.QUEUED:
            t = self.store.transition_trial(t.id, TrialState.RUNNING, run_id=job.run_id)
        if not job.status.is_terminal():
            return t
        to = _JOB_TO_TRIAL[job.status]
        stopping = t.message  # a running trial's message is why the sweep stops it
        message = None
        if to is TrialState.FAILED and job.message:
            message = job.message.splitlines()[0]
        elif to is TrialState.CANCELLED and stopping:
            to, message = TrialState.STOPPED_EARLY, stopping
        elif to is TrialState.CANCELLED:
            message = STOPPED_MESSAGE if sweep.stop_requested else "its job was cancelled"
        elif stopping:
            message = f"it ended before its stop took effect ({stopping})"
        t = self.store.transition_trial(
            t.id, to, value=self._final(sweep, job.run_id), message=message
        )
        if tpe is not None:
            tpe.tell(t.number, t.optuna_number, t.params, t.state.value, t.value)
        return t

    def _final(self, sweep: SweepRecord, run_id: str | None) -> float | None:
        if not run_id:
            return None
        try:
            latest = self.store.get_run(run_id).metrics.get(sweep.metric)
        except NotFound:
            return None
        return None if latest is None else latest.value

    def _cancel_job(self, job: JobRecord | None) -> None:
        if job is not None and not job.status.is_terminal():
            self.store.update_job(job.id, cancel_requested=True)
            self._wake_scheduler()

    def _cancel(
        self,
        sweep: SweepRecord,
        trials: list[TrialRecord],
        jobs: dict[int, JobRecord],
        tpe: TpeSearch | None,
    ) -> None:
        for i, t in enumerate(trials):
            job = jobs.get(t.job_id) if t.job_id else None
            self._cancel_job(job)
            if t.state.is_terminal():
                continue
            trials[i] = t = self.store.transition_trial(
                t.id,
                TrialState.CANCELLED,
                value=self._final(sweep, job.run_id if job else None),
                message=STOPPED_MESSAGE,
            )
            if tpe is not None:
                tpe.tell(t.number, t.optuna_number, t.params, "cancelled")

    # ------------------------------------------------------------------ early stopping
    def _stop_poor(self, sweep, rule, trials, jobs) -> None:
        """Stop the trials the rule picks: each is marked with why (its message, while it
        runs), then its job is cancelled; it becomes stopped_early when the job has ended
        (succeeded, if it ended first). Its metric still counts for the others."""
        curves = []
        for t in trials:
            values = self._curve(sweep, t, jobs.get(t.job_id) if t.job_id else None)
            if values is not None:
                judged = t.state is TrialState.RUNNING and not t.message
                curves.append(Curve(t.number, judged, t.state is TrialState.SUCCEEDED, values))
        decisions = to_stop(rule, sweep.metric, sweep.goal, curves)
        for i, t in enumerate(trials):
            why = decisions.get(t.number)
            job = jobs.get(t.job_id) if t.job_id else None
            if why is None or job is None or job.status is not JobStatus.RUNNING:
                continue
            try:
                trials[i] = self.store.stop_trial_early(t.id, why)
            except InvalidTransition:
                continue
            self._wake_scheduler()

    def _curve(
        self, sweep: SweepRecord, t: TrialRecord, job: JobRecord | None
    ) -> list[float | None] | None:
        """The trial's metric as recorded, in step order; kept once its job has ended."""
        if t.id in self._ended_curves:
            return self._ended_curves[t.id]
        run_id = t.run_id or (job.run_id if job else None)
        if not run_id:
            return None
        try:
            values = [p.value for p in self.store.metric_history(run_id, sweep.metric)]
        except NotFound:  # the run is not recorded yet: its ranks are starting
            return None
        if job is None or job.status.is_terminal():
            self._ended_curves[t.id] = values
        return values

    # ------------------------------------------------------------------ new trials
    def _new_trial(
        self, sweep: SweepRecord, dims: list[Dimension], number: int, tpe: TpeSearch | None
    ) -> TrialRecord | None:
        """Trial `number`, with its job queued (or failed, with the reason, when its
        configuration is refused); None when the grid is spent."""
        optuna_number = None
        if tpe is not None:
            optuna_number, params = tpe.ask(number)
        elif sweep.method == "grid":
            params = grid_params(dims, number)
            if params is None:
                return None
        else:
            params = random_params(dims, sweep.seed, number)
        try:
            job = self._job(sweep, number, params)
            problem = None
        except (ConfigError, EasgdError) as exc:
            job, problem = None, str(exc)
        try:
            trial = self.store.add_trial(
                sweep.id,
                number,
                params,
                job=job,
                optuna_number=optuna_number,
                message=problem and f"not launched: {problem}",
            )
        except Exception:
            if tpe is not None:
                tpe.fail_asked(optuna_number)
            raise
        if tpe is not None and job is None:
            tpe.fail_asked(optuna_number)
        if job is not None:
            self._wake_scheduler()
        return trial

    def _job(self, sweep: SweepRecord, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """The job of a trial, as POST /jobs would queue it."""
        data = with_values(sweep.base_config, params)
        name = trial_name(sweep.name, sweep.id, number)
        tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
        data["tags"] = {**tags, "sweep": str(sweep.id), "trial": str(number)}
        # A trial's own model and data are not tried here (seconds each, on the driver's
        # thread): one that fails, fails its job with the ranks' one line.
        prepared = prepare(data, None, None, self.settings.data_dirs, name, try_code=False)
        problem = self._placement(prepared.config)
        if problem:
            raise SweepError([problem])
        return {
            "config": prepared.frozen,
            "workers": prepared.config.resources.workers,
            "name": name,
            "source": sweep.source,
        }

    # ------------------------------------------------------------------ the end
    def _fail(self, sweep: SweepRecord, why: str) -> None:
        """End a sweep the service cannot go on with as failed, saying why, and cancel what
        of it still runs; each step on its own, as the store may be what fails."""
        print(f"easgd service: sweep {sweep.id} failed: {why}", file=sys.stderr, flush=True)
        for t in sweep.trials:
            if t.state.is_terminal():
                continue
            try:
                if t.job_id:
                    self._cancel_job(self.store.get_job(t.job_id))
                self.store.transition_trial(t.id, TrialState.CANCELLED, message=FAILED_MESSAGE)
            except Exception as exc:  # noqa: BLE001 - the sweep is ended regardless
                print(f"easgd service: sweep {sweep.id}: {exc!r}", file=sys.stderr, flush=True)
        try:
            self.store.end_sweep(sweep.id, SweepStatus.FAILED, why.splitlines()[0])
        except Exception as exc:  # noqa: BLE001 - tried again on the next pass
            print(f"easgd service: sweep {sweep.id}: {exc!r}", file=sys.stderr, flush=True)
            return
        self._failures.pop(sweep.id, None)
        self._tpe.pop(sweep.id, None)

    def _end(self, sweep: SweepRecord, status: SweepStatus, trials: list[TrialRecord]) -> None:
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        ended = SweepRecord(**{**sweep.__dict__, "trials": trials})
        best = ended.best_trial()
        if best is not None:
            summary += f"; best: trial {best.number} ({sweep.metric} {_num(best.value)})"
        try:
            self.store.end_sweep(sweep.id, status, f"{len(trials)} trials: {summary}")
        except InvalidTransition:
            return
        self._tpe.pop(sweep.id, None)
        for t in trials:
            self._ended_curves.pop(t.id, None)
            self._ended_jobs.discard(t.job_id)


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"
