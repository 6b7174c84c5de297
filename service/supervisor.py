"""The scheduler and supervisor: takes queued jobs in order (priority, then age), launches them
with horovodrun when capacity allows, watches them, cancels them, and reconciles at start-up.

Every status change goes through `Store.transition_job`, which never leaves a terminal state;
claiming a job (queued -> running) is that same atomic transition, so no job runs twice even if
two services share a store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from db.entities import JobRecord, JobStatus, RunStatus
from db.store import InvalidTransition, NotFound, Store
from service import processes
from service.settings import ServiceSettings

LOST_MESSAGE = "lost: the service stopped while it ran"


@dataclass
class Allocation:
    hosts: dict[str, int]
    gpus: list[str] = field(default_factory=list)

    def host_arg(self) -> str:
        return ",".join(f"{h}:{n}" for h, n in self.hosts.items())


@dataclass
class Handle:
    job_id: int
    pid: int
    start_time: float
    allocation: Allocation
    popen: subprocess.Popen | None = None  # None when adopted after a restart

    def poll(self) -> tuple[bool, int | None]:
        """(finished, exit code); an adopted process's exit code is unknown."""
        if self.popen is not None:
            code = self.popen.poll()
            return code is not None, code
        return not processes.is_same_process(self.pid, self.start_time), None


class Supervisor:
    def __init__(self, store: Store, settings: ServiceSettings):
        self.store = store
        self.settings = settings
        self.handles: dict[int, Handle] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    def reconcile(self) -> list[str]:
        """Before anything new is accepted: adopt live jobs, fail the ones that were lost."""
        notes = []
        for job in self.store.list_jobs(status=JobStatus.RUNNING, limit=100000):
            if processes.is_same_process(job.pid, job.pid_start_time):
                self.handles[job.id] = Handle(
                    job.id, job.pid, job.pid_start_time, self._allocation_of(job)
                )
                notes.append(f"job {job.id}: still running (pid {job.pid}), supervised again")
            else:
                self._finish(job, JobStatus.FAILED, message=LOST_MESSAGE)
                notes.append(f"job {job.id}: {LOST_MESSAGE}")
        return notes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="easgd-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; running jobs keep running and are adopted by the next service."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

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
            self._watch_running()
            self._launch_queued()

    def _watch_running(self) -> None:
        for job_id, handle in list(self.handles.items()):
            try:
                job = self.store.get_job(job_id)
            except NotFound:
                self.handles.pop(job_id, None)
                continue
            if job.cancel_requested and job.status is JobStatus.RUNNING:
                self._cancel_running(job, handle)
                continue
            done, code = handle.poll()
            if not done:
                continue
            self.handles.pop(job_id, None)
            if code is None:  # adopted: judge by what the run recorded
                code = self._exit_from_run(job)
            if code == 0:
                self._finish(job, JobStatus.SUCCEEDED, exit_code=0)
            else:
                last = processes.tail(job.log_path, 20)
                what = f"exit code {code}" if code is not None else "exited after a restart"
                self._finish(
                    job,
                    JobStatus.FAILED,
                    exit_code=code,
                    message=f"{what}; last lines of the log:\n{last}",
                )

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
                self._finish(job, JobStatus.CANCELLED, message="cancelled before it started")
                continue
            allocation = self._allocate(job)
            if allocation is None:
                return  # strict order: a later job does not overtake the head of the queue
            self._launch(job, allocation)

    # ------------------------------------------------------------------ capacity
    def _used(self) -> tuple[dict[str, int], set[str]]:
        hosts: dict[str, int] = {}
        gpus: set[str] = set()
        for h in self.handles.values():
            for name, n in h.allocation.hosts.items():
                hosts[name] = hosts.get(name, 0) + n
            gpus.update(h.allocation.gpus)
        return hosts, gpus

    def _allocate(self, job: JobRecord) -> Allocation | None:
        used_hosts, used_gpus = self._used()
        if job.workers > self.settings.slots:
            self._finish(
                job,
                JobStatus.FAILED,
                message=(
                    f"needs {job.workers} slots; this service has {self.settings.slots} "
                    f"({', '.join(f'{h}:{n}' for h, n in self.settings.hosts.items())})"
                ),
            )
            return None
        config = json.loads(job.config)
        gpus_needed = job.workers * int(config.get("resources", {}).get("gpus_per_worker", 0))
        gpus: list[str] = []
        if gpus_needed:
            free = [g for g in self.settings.gpus if g not in used_gpus]
            if len(self.settings.gpus) < gpus_needed:
                self._finish(
                    job,
                    JobStatus.FAILED,
                    message=(
                        f"needs {gpus_needed} GPUs; this service has {len(self.settings.gpus)}"
                    ),
                )
                return None
            if len(free) < gpus_needed:
                return None
            gpus = free[:gpus_needed]
        remaining = job.workers
        hosts: dict[str, int] = {}
        for name, slots in self.settings.hosts.items():
            take = min(slots - used_hosts.get(name, 0), remaining)
            if take > 0:
                hosts[name] = take
                remaining -= take
            if remaining == 0:
                return Allocation(hosts, gpus)
        return None

    def _allocation_of(self, job: JobRecord) -> Allocation:
        hosts = {}
        for part in (job.hosts or f"localhost:{job.workers}").split(","):
            name, _, n = part.partition(":")
            hosts[name] = int(n or 1)
        return Allocation(hosts, job.gpus.split(",") if job.gpus else [])

    # ------------------------------------------------------------------ launch and finish
    def command(
        self, job: JobRecord, allocation: Allocation, config_path: Path, run_dir: Path
    ) -> list[str]:
        """The horovodrun argument list (never a shell string)."""
        bindir = Path(sys.executable).parent
        horovodrun = (
            str(bindir / "horovodrun") if (bindir / "horovodrun").exists() else "horovodrun"
        )
        argv = [horovodrun, "-np", str(job.workers), "-H", allocation.host_arg(), "--gloo"]
        if set(allocation.hosts) <= {"localhost", "127.0.0.1"}:
            argv += ["--network-interface", "lo"]
        return argv + [
            sys.executable,
            "-m",
            "training",
            "--config",
            str(config_path),
            "--out",
            str(run_dir),
            "--source",
            job.source,
        ]

    def _launch(self, job: JobRecord, allocation: Allocation) -> None:
        job_dir = self.settings.jobs_dir / str(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        config_path = job_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(json.loads(job.config), sort_keys=False))
        log_path = job_dir / "job.log"
        run_dir = self.settings.runs_dir / f"job-{job.id}"
        try:
            job = self.store.transition_job(
                job.id,
                JobStatus.RUNNING,
                log_path=str(log_path),
                run_id=run_dir.name,
                run_dir=str(run_dir),
                gpus=",".join(allocation.gpus) or None,
                hosts=allocation.host_arg(),
            )
        except InvalidTransition:
            return  # another service claimed it, or it was cancelled meanwhile
        env = {
            **os.environ,
            processes.JOB_ENV: str(job.id),
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "EASGD_SOURCE": job.source,
        }
        if self.store.url:
            env["EASGD_DB_URL"] = self.store.url
        if allocation.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(allocation.gpus)
        argv = self.command(job, allocation, config_path, run_dir)
        with log_path.open("a") as log:
            log.write(f"easgd service: job {job.id}: {' '.join(argv)}\n")
        try:
            popen, started = processes.spawn(argv, env, log_path, cwd=job_dir)
        except OSError as exc:
            self._finish(job, JobStatus.FAILED, message=f"could not start horovodrun: {exc}")
            return
        self.handles[job.id] = Handle(job.id, popen.pid, started, allocation, popen)
        self.store.update_job(job.id, pid=popen.pid, pid_start_time=started)

    def _finish(self, job: JobRecord, status: JobStatus, **fields) -> None:
        try:
            self.store.transition_job(job.id, status, **fields)
        except InvalidTransition:
            pass

    def _cancel_running(self, job: JobRecord, handle: Handle) -> None:
        processes.terminate_job(job.id, handle.pid, self.settings.grace_seconds)
        if handle.popen is not None:
            try:
                handle.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.handles.pop(job.id, None)
        self._finish(
            job,
            JobStatus.CANCELLED,
            message="cancelled by request",
            exit_code=handle.popen.returncode if handle.popen else None,
        )

    # ------------------------------------------------------------------ requests
    def cancel(self, job_id: int) -> JobRecord:
        """Cancel a queued job at once, or a running one (its whole tree) on the next pass."""
        job = self.store.get_job(job_id)
        if job.status.is_terminal():
            return job
        self.store.update_job(job_id, cancel_requested=True)
        if job.status is JobStatus.QUEUED:
            self._finish(job, JobStatus.CANCELLED, message="cancelled before it started")
        else:
            self.tick()
        return self.store.get_job(job_id)
