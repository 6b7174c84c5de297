"""Checkpoints and resizes asked of a running job (`easgd jobs checkpoint`, `easgd jobs scale`):
the supervisor's part that talks to a job's ranks while they run. A mixin of the Supervisor,
whose store, launcher, handles and lock it uses."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from db.entities import JobRecord, JobStatus
from db.errors import InvalidTransition
from service.launchers import Launched
from training.run import checkpoint, signals
from training.schema import ConfigError, parse_config, topology_problem

if TYPE_CHECKING:
    import threading

    from db.store import Store
    from service.launchers import Allocation, Launcher
    from service.settings import ServiceSettings
    from training.schema import ExperimentConfig

# How long a scale waits for the checkpoint it asked for.
SCALE_WAIT_SECONDS = 120


class Resizing:
    if TYPE_CHECKING:  # the Supervisor's
        store: Store
        settings: ServiceSettings
        launcher: Launcher
        handles: dict[int, Launched]
        scaling: dict[int, tuple[int, int, float]]
        _lock: threading.RLock

        def _config(self, job: JobRecord) -> ExperimentConfig: ...
        def placement_problem(
            self,
            workers: int,
            gpus_per_worker: int = 0,
            requested: dict | None = None,
            time_limit: int | None = None,
        ) -> str | None: ...
        def _allocate(
            self, job: JobRecord, config: ExperimentConfig, workers: int | None = None
        ) -> Allocation | None: ...
        def _fail(
            self, job: JobRecord, launched: Launched, code: int | None, why: str = ""
        ) -> None: ...
        def _start(
            self,
            job: JobRecord,
            config: ExperimentConfig,
            allocation: Allocation,
            resume: bool = False,
        ) -> None: ...

    def _running_here(self, job_id: int, what: str) -> tuple[JobRecord, Launched]:
        job = self.store.get_job(job_id)
        launched = self.handles.get(job_id)
        if job.status is not JobStatus.RUNNING or launched is None:
            where = (
                "running under another service"
                if launched is None and job.status is (JobStatus.RUNNING)
                else job.status.value
            )
            raise InvalidTransition(
                f"job {job_id} is {where}; only a running job of this service can {what}"
            )
        return job, launched

    def _ask_for_checkpoint(self, launched: Launched) -> int:
        """The training program's request (training.run.signals): SIGUSR1 to its ranks."""
        return self.launcher.signal_ranks(launched, signal.SIGUSR1)

    def request_checkpoint(self, job_id: int) -> JobRecord:
        """Ask a running job's ranks for a checkpoint at the next step boundary they agree on
        (every 10 steps for ranks that all-reduce; at once on the center server)."""
        with self._lock:
            job, launched = self._running_here(job_id, "checkpoint")
            if not self.launcher.signals_every_rank(launched) and job.run_dir:
                Path(job.run_dir).mkdir(parents=True, exist_ok=True)
                signals.request(Path(job.run_dir))  # rank 0 may run on another host
                self._ask_for_checkpoint(launched)
                return job
            if self._ask_for_checkpoint(launched) == 0:
                raise InvalidTransition(f"job {job_id} has no training rank running yet")
            return job

    def scale(self, job_id: int, workers: int) -> JobRecord:
        """Checkpoint a running job now, then relaunch it from that checkpoint with `workers`."""
        with self._lock:
            job, launched = self._running_here(job_id, "scale")
            config = self._config(job)
            stored = config.to_dict()
            resized = {**stored, "resources": {**stored["resources"], "workers": workers}}
            try:  # what the relaunch would refuse (backup workers, groups, a matrix, hosts)
                checked = parse_config(resized)
                problem = topology_problem(checked, workers)
                if problem:
                    raise ConfigError([problem])
            except ConfigError as exc:
                raise ConfigError([f"--workers {workers}: {p}" for p in exc.problems]) from None
            res = checked.resources
            problem = self.placement_problem(
                workers, res.gpus_per_worker, res.host_map, res.time_limit_minutes
            )
            if problem:
                raise InvalidTransition(problem.replace("resources.workers", "--workers"))
            self.handles.pop(job_id)  # its own slots count as free for the new size
            try:
                fits = self._allocate(job, checked, workers) is not None
            finally:
                self.handles[job_id] = launched
            if not fits:
                raise InvalidTransition(
                    f"--workers {workers}: not enough free slots now; the job goes on as it is"
                )
            found = checkpoint.latest(Path(job.run_dir)) if job.run_dir else None
            if self._ask_for_checkpoint(launched) == 0:
                raise InvalidTransition(f"job {job_id} has no training rank running yet")
            self.scaling[job_id] = (workers, found[1]["step"] if found else -1, time.time())
            note = f"scaling to {workers} workers: waiting for the checkpoint asked for"
            return self.store.update_job(job_id, message=note)

    def _scale_when_checkpointed(self) -> None:
        for job_id in list(self.scaling):
            try:
                self._scale_one(job_id, *self.scaling[job_id])
            except Exception as exc:  # noqa: BLE001 - one job must not stop the others' watch
                self.scaling.pop(job_id, None)
                print(f"easgd service: scaling job {job_id}: {exc!r}", file=sys.stderr, flush=True)

    def _scale_one(self, job_id: int, workers: int, before: int, asked_at: float) -> None:
        launched = self.handles.get(job_id)
        job = self.store.get_job(job_id)
        if launched is None or job.status is not JobStatus.RUNNING:
            self.scaling.pop(job_id)
            return
        found = checkpoint.latest(Path(job.run_dir))
        if found is None or found[1]["step"] <= before:
            if time.time() - asked_at > SCALE_WAIT_SECONDS:
                self.scaling.pop(job_id)
                self.store.update_job(
                    job_id,
                    message=f"scaling to {workers} workers given up: no checkpoint within "
                    f"{SCALE_WAIT_SECONDS} s",
                )
            return
        config = self._config(job)
        self.handles.pop(job_id)
        self.launcher.stop(launched, self.settings.grace_seconds)
        allocation = self._allocate(job, config, workers)
        if allocation is None:  # its own slots are free again: only another job took them
            allocation = self._allocate(job, config)
        step = int(found[1]["step"])
        placed = allocation.ranks if allocation else 0
        self.scaling.pop(job_id)
        note = f"scaled from {found[1].get('workers')} to {placed} workers at step {step}"
        self.store.add_event(job.run_id, "scaled", note, step)
        self.store.update_job(job_id, workers=placed or job.workers, message=note)
        if allocation is None:
            self._fail(job, launched, None, "not relaunched: its slots were taken while it scaled")
            return
        self._start(self.store.get_job(job_id), config, allocation, resume=True)
