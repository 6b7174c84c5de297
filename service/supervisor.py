"""The scheduler and supervisor: takes queued jobs in order (priority, then age), has them
launched when capacity allows, watches them, cancels them, restarts or scales them, and
reconciles at start-up.

Every status change goes through `Store.transition_job`, which never leaves a terminal state and
closes the job's run in the same transaction. Only the holder of the store's scheduler lease
reconciles and launches: two services on one store would otherwise each count only their own
jobs against the same slots and GPUs. The store checks the lease again inside each launch's
claim, and a service that takes the lease back first adopts what was launched meanwhile.

How an attempt's ranks are started, signalled and stopped, and why they failed, is the
launcher's (service.launchers; horovodrun by default): the supervisor hands it a typed
configuration and an allocation, and talks to it through that interface only.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections.abc import Collection
from pathlib import Path

from db.entities import JobRecord, JobStatus, LeaseRecord, RunStatus
from db.errors import InvalidTransition, LeaseLost, NotFound
from db.store import Store
from service import logs, processes
from service.launchers import (
    Allocation,
    Attempt,
    Failure,
    Launched,
    Launcher,
    LaunchError,
    launcher_for,
)
from service.lease import SchedulerLease
from service.processes import IsSameProcess
from service.resizing import Resizing
from service.settings import ServiceSettings
from service.submission import stored_config
from training.run import checkpoint
from training.schema import ConfigError, ExperimentConfig
from training.schema.hosts import Hosts, format_hosts, parse_hosts

LOST_MESSAGE = "lost: the service stopped while it ran"
CANCELLED_MESSAGE = "cancelled by request"
FINISHED_FIRST_MESSAGE = "its run finished before the cancel asked for reached it"


class Supervisor(Resizing):
    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        *,
        launcher: Launcher | None = None,
        is_same_process: IsSameProcess = processes.is_same_process,
    ):
        """`launcher` starts and stops the ranks (horovodrun by default); `is_same_process`
        tells whether the lease's holder still lives on this host."""
        self.store = store
        self.settings = settings
        self.launcher = launcher or launcher_for(settings)
        self.handles: dict[int, Launched] = {}
        # Jobs asked to scale: (workers, the checkpoint step before the ask, when asked).
        self.scaling: dict[int, tuple[int, int, float]] = {}
        self._configs: dict[int, ExperimentConfig] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease = SchedulerLease(store, settings, is_same_process)

    # ------------------------------------------------------------------ the store's lease
    def acquire_lease(self) -> LeaseRecord:
        """Become this store's one scheduler, or raise SchedulerBusy naming the one there is."""
        return self.lease.acquire()

    def _keep_lease(self) -> None:
        """A lease taken back means another service may have launched jobs meanwhile, so the
        store's running jobs are adopted before any launch."""
        if self.lease.keep():
            self._adopt_running()

    # ------------------------------------------------------------------ life cycle
    def reconcile(self) -> list[str]:
        """Before anything new is accepted: take the store's lease, adopt live jobs, fail the
        ones that were lost (their runs with them)."""
        if not self.lease.held:
            self.acquire_lease()
        return self._adopt_running()

    def _adopt_running(self) -> list[str]:
        """Supervise every running job of the store that this service does not yet watch, so
        that their slots and GPUs count; fail the ones whose processes are gone."""
        notes = []
        for job in self.store.list_jobs(status=JobStatus.RUNNING, limit=100000):
            if job.id in self.handles:
                continue
            launched = Launched(
                job.id,
                self._allocation_of(job),
                job.launch_token,
                job.pid,
                job.pid_start_time,
                Path(job.log_path) if job.log_path else None,
                scheduler_job=job.scheduler_job,
            )
            if self.launcher.alive(launched):
                self.handles[job.id] = launched
                what = job.scheduler_job or f"pid {job.pid}"
                notes.append(f"job {job.id}: still running ({what}), supervised again")
            else:
                self._finish(job, JobStatus.FAILED, message=LOST_MESSAGE, run_error=LOST_MESSAGE)
                notes.append(f"job {job.id}: {LOST_MESSAGE}")
        return notes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="easgd-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and hand the lease back; running jobs keep running and are adopted
        by the next service."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        with self._lock:
            self.lease.release()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a bad tick
                print(f"easgd service: supervisor error: {exc!r}", file=sys.stderr, flush=True)
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()

    # ------------------------------------------------------------------ one pass
    def tick(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._keep_lease()
            self._watch_running()
            self._keep_lease()  # cancels may have taken long: the lease is checked again
            if self.lease.held:
                self._launch_queued()

    def _watch_running(self) -> None:
        self._scale_when_checkpointed()
        for job_id, launched in list(self.handles.items()):
            try:
                job = self.store.get_job(job_id)
            except NotFound:
                self.handles.pop(job_id, None)
                continue
            if job.cancel_requested and job.status is JobStatus.RUNNING:
                self._cancel_running(job, launched)
                continue
            alive = self.launcher.alive(launched)
            job = self._note_scheduler(job, launched)
            if alive:
                continue
            self.handles.pop(job_id, None)
            code = self.launcher.exit_code(launched)
            if code is None:  # adopted: judge by what the run recorded
                code = self._exit_from_run(job)
            outside = self.launcher.cancelled_outside(launched) if code != 0 else None
            if code == 0:
                self._finish(job, JobStatus.SUCCEEDED, exit_code=0)
            elif outside:
                self._finish(
                    job, JobStatus.CANCELLED, exit_code=code, message=outside, run_error=outside
                )
            else:
                why_not, failure = self._restart(job, launched, code)
                if why_not is not None:
                    self._fail(job, launched, code, why_not, failure)

    def _note_scheduler(self, job: JobRecord, launched: Launched) -> JobRecord:
        """What a batch scheduler last said of the attempt, in the job's record when it changed."""
        state = self.launcher.scheduler_state(launched)
        if state == job.scheduler_state:
            return job
        return self.store.update_job(job.id, scheduler_state=state)

    def _fail(
        self,
        job: JobRecord,
        launched: Launched,
        code: int | None,
        why_not_restarted: str = "",
        failure: Failure | None = None,
    ) -> None:
        """Failed, with the program's own reason first (from `failure`, when the launcher already
        read it), then the exit code and the log's end."""
        what = f"exit code {code}" if code is not None else "exited after a restart"
        if why_not_restarted:
            what += f" ({why_not_restarted})"
        reason = (failure or self.launcher.failure(launched)).reason
        message = f"{what}; last lines of the log:\n{logs.tail(job.log_path, 20)}"
        self._finish(
            job,
            JobStatus.FAILED,
            exit_code=code,
            message=f"{reason}\n{message}" if reason else message,
            run_error=reason or what,
        )

    def _restart(
        self, job: JobRecord, launched: Launched, code: int | None
    ) -> tuple[str | None, Failure | None]:
        """Relaunch a job whose ranks failed from its run's last complete checkpoint, with as
        many workers as can be placed now (resources.min_workers at least). None when it did;
        else why not ("" when a restart does not apply): a configuration error (exit 2), no
        checkpoint, its restarts spent (resources.max_restarts), the same failure at the same
        step as the attempt before, or too few free slots; with what the launcher read of the
        failed attempt, when it got that far."""
        if code in (None, 0, 2) or not job.run_dir or not job.run_id:
            return "", None
        try:
            config = self._config(job)
        except ConfigError as exc:
            return f"not restarted: {exc}", None
        limit = config.resources.max_restarts
        floor = config.resources.min_workers or job.workers
        if limit <= 0:
            return "", None
        found = checkpoint.latest(Path(job.run_dir))
        try:
            events = self.store.events(job.run_id)
        except NotFound:
            return "", None
        restarts = sum(e.kind == "restarted" for e in events)
        failed = [(e.message, e.step) for e in events if e.kind == "failed"]
        if found is None:
            return "not restarted: the run has no complete checkpoint yet", None
        if restarts >= limit:
            return f"not restarted: its {limit} restarts (resources.max_restarts) are spent", None
        if len(failed) >= 2 and failed[-1] == failed[-2]:
            return "not restarted: the same failure at the same step as the attempt before", None
        # Nothing of the failed attempt may survive it (horovodrun can leave ranks behind).
        self.launcher.stop(launched, self.settings.grace_seconds)
        failure = self.launcher.failure(launched)
        first, placed = failure.first, failure.hosts or launched.allocation.hosts
        down, suspect = self._hosts_to_leave_out(placed, failure)
        left_out = {**suspect, **down}
        allocation = None
        for exclude in (set(left_out), set(down)):
            allocation = next(
                (
                    a
                    for n in range(job.workers, floor - 1, -1)
                    if (a := self._allocate(job, config, n, exclude))
                ),
                None,
            )
            if allocation is not None:
                break
        if allocation is None:
            return f"not restarted: fewer than {floor} slots free (resources.min_workers)", failure
        workers = allocation.ranks
        step = int(found[1]["step"])
        cause = failure.reason or f"exit code {code}"
        if first and len(placed) > 1:
            cause = f"rank {first.rank} on {first.host} failed first (exit code {first.exit_code})"
        skipped = [f"{h} ({why})" for h, why in left_out.items() if h in allocation.avoid]
        note = (
            f"{cause}; relaunched from the checkpoint at step {step} with {workers} of "
            f"{job.workers} workers (restart {restarts + 1} of {limit})"
        )
        if skipped:
            note += f"; left out {', '.join(skipped)}"
        self.store.add_event(job.run_id, "restarted", note, step)
        with Path(job.log_path).open("a") as log:
            log.write(f"easgd service: job {job.id}: {note}\n")
        self._start(job, config, allocation, resume=True)
        self.store.update_job(job.id, message=f"restarted {restarts + 1} time(s); last: {note}")
        return None, failure

    def _hosts_to_leave_out(
        self, placed: Hosts, failure: Failure
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The hosts a relaunch must avoid (the launcher cannot reach them) and those it should
        (as Horovod's elastic mode does, the host whose rank failed first, when the job had
        others; it is taken back only if the rest cannot hold resources.min_workers), each with
        why."""
        suspect: dict[str, str] = {}
        first = failure.first
        if len(placed) > 1 and first and first.host is not None:
            suspect[first.host] = f"its rank {first.rank} failed first"
        return self.launcher.unreachable(placed), suspect

    def _exit_from_run(self, job: JobRecord) -> int | None:
        if not job.run_id:
            return None
        try:
            run = self.store.get_run(job.run_id)
        except NotFound:
            return None
        return 0 if run.status == RunStatus.FINISHED else None

    def _launch_queued(self) -> None:
        for job in self.store.queued_jobs():
            if job.cancel_requested:
                self._finish(
                    job,
                    JobStatus.CANCELLED,
                    expected=JobStatus.QUEUED,
                    message="cancelled before it started",
                )
                continue
            try:
                config = self._config(job)
            except ConfigError as exc:
                self._finish(job, JobStatus.FAILED, expected=JobStatus.QUEUED, message=str(exc))
                continue
            allocation = self._allocate(job, config)
            if allocation is None:
                return  # strict order: a later job does not overtake the head of the queue
            try:
                self._launch(job, config, allocation)
            except LeaseLost as exc:
                print(f"easgd service: launch refused: {exc}", file=sys.stderr, flush=True)
                self.lease.check_soon()
                return

    # ------------------------------------------------------------------ capacity
    def placement_problem(
        self,
        workers: int,
        gpus_per_worker: int = 0,
        requested: Hosts | None = None,
        time_limit: int | None = None,
    ) -> str | None:
        """Why this service can never place such a job (its launcher's placement), or None."""
        return self.launcher.placement_problem(
            self.settings, workers, gpus_per_worker, requested, time_limit
        )

    def _allocate(
        self,
        job: JobRecord,
        config: ExperimentConfig,
        workers: int | None = None,
        exclude: Collection[str] = (),
    ) -> Allocation | None:
        """Where `workers` (default: the job's) ranks go now, or None until slots are free;
        never on the hosts in `exclude`. A queued job that can never be placed fails."""
        workers = workers or job.workers
        res = config.resources
        problem = self.placement_problem(
            workers, res.gpus_per_worker, res.host_map, res.time_limit_minutes
        )
        if problem and workers == job.workers:
            self._finish(job, JobStatus.FAILED, expected=JobStatus.QUEUED, message=problem)
            return None
        if problem:
            return None
        in_use = [launched.allocation for launched in self.handles.values()]
        return self.launcher.allocate(
            self.settings, in_use, workers, res.gpus_per_worker, res.host_map, exclude
        )

    def _allocation_of(self, job: JobRecord) -> Allocation:
        # A running job's hosts are the placement it was given: always host:slots.
        hosts = parse_hosts(job.hosts) if job.hosts else {"localhost": job.workers}
        return Allocation(hosts, job.gpus.split(",") if job.gpus else [])

    # ------------------------------------------------------------------ launch and finish
    def _launch(self, job: JobRecord, config: ExperimentConfig, allocation: Allocation) -> None:
        """Claim the job (refused if it was asked to cancel, or the lease is no longer ours:
        LeaseLost), then start it."""
        job_dir = self.settings.jobs_dir / str(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        log_path = job_dir / "job.log"
        run_dir = self.settings.runs_dir / f"job-{job.id}"
        try:
            job = self.store.transition_job(
                job.id,
                JobStatus.RUNNING,
                log_path=str(log_path),
                run_id=run_dir.name,
                run_dir=str(run_dir),
                expected=JobStatus.QUEUED,
                lease_token=self.lease.token,
            )
        except InvalidTransition:
            return  # cancelled meanwhile
        self._start(job, config, allocation)

    def _start(
        self,
        job: JobRecord,
        config: ExperimentConfig,
        allocation: Allocation,
        resume: bool = False,
    ) -> None:
        """Start one attempt of a running job: its processes carry a fresh launch token."""
        token = secrets.token_hex(16)
        job = self.store.update_job(
            job.id,
            gpus=",".join(allocation.gpus) or None,
            hosts=format_hosts(allocation.hosts),
            launch_token=token,
            scheduler_job=None,
            scheduler_state=None,
        )
        attempt = Attempt(
            job.id,
            job.source,
            config,
            allocation,
            Path(job.log_path),
            Path(job.run_dir),
            token,
            resume=resume,
            store_url=self.store.url,
        )
        try:
            launched = self.launcher.start(attempt)
        except LaunchError as exc:
            self._finish(job, JobStatus.FAILED, message=str(exc), run_error=str(exc))
            return
        self.handles[job.id] = launched
        self.store.update_job(
            job.id,
            pid=launched.pid,
            pid_start_time=launched.start_time,
            scheduler_job=launched.scheduler_job,
        )

    def _config(self, job: JobRecord) -> ExperimentConfig:
        """The job's stored configuration, typed once (a queued job is placed at every poll);
        ConfigError when this version refuses it."""
        config = self._configs.get(job.id)
        if config is None:
            config = self._configs[job.id] = stored_config(job)
        return config

    def _finish(
        self,
        job: JobRecord,
        status: JobStatus,
        run_error: str | None = None,
        expected: JobStatus | None = None,
        **fields,
    ) -> bool:
        """Move the job to a terminal status; a run still open is closed with it. False when
        the job had moved on meanwhile (ended, or claimed when `expected` is queued)."""
        run_status = {
            JobStatus.FAILED: RunStatus.FAILED,
            JobStatus.CANCELLED: RunStatus.CANCELLED,
        }.get(status)
        try:
            self.store.transition_job(
                job.id,
                status,
                expected=expected,
                run_status=run_status,
                run_error=run_error,
                **fields,
            )
        except InvalidTransition:
            return False
        self._configs.pop(job.id, None)  # an ended job's configuration is not read again
        return True

    def _cancel_running(self, job: JobRecord, launched: Launched) -> None:
        code = self.launcher.stop(launched, self.settings.grace_seconds)
        self.handles.pop(job.id, None)
        self._note_scheduler(job, launched)
        if self._exit_from_run(job) == 0:  # the run finished before the cancel reached it
            self._finish(job, JobStatus.SUCCEEDED, exit_code=0, message=FINISHED_FIRST_MESSAGE)
            return
        self._finish(
            job,
            JobStatus.CANCELLED,
            message=CANCELLED_MESSAGE,
            exit_code=code,
            run_error=CANCELLED_MESSAGE,
        )

    # ------------------------------------------------------------------ requests
    def cancel(self, job_id: int) -> JobRecord:
        """Cancel a queued job at once, or a running one (its whole tree) at once when this
        service runs it, else on its supervisor's next pass. Never raises for a job that ended
        meanwhile: the job is returned as it is. Refused (InvalidTransition) once the job's run
        has finished: the job is only exiting, and succeeds.

        Under the lock, so this service's launch cannot slip between the read and the cancel;
        the store refuses to claim a job asked to cancel, and cancels a queued job only while it
        is still queued, so another service's launch cannot either.
        """
        with self._lock:
            job = self.store.get_job(job_id)
            if job.status.is_terminal():
                return job
            if self._exit_from_run(job) == 0:
                raise InvalidTransition(
                    f"job {job_id}: its run {job.run_id} has finished; the job is exiting and "
                    "succeeds on its own, so there is nothing left to cancel"
                )
            self.store.update_job(job_id, cancel_requested=True)
            if job.status is JobStatus.QUEUED and self._finish(
                job,
                JobStatus.CANCELLED,
                expected=JobStatus.QUEUED,
                message="cancelled before it started",
            ):
                return self.store.get_job(job_id)
            self.tick()
            return self.store.get_job(job_id)
