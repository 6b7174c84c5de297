"""The scheduler and supervisor: takes queued jobs in order (priority, then age), launches them
with horovodrun when capacity allows, watches them, cancels them, and reconciles at start-up.

Every status change goes through `Store.transition_job`, which never leaves a terminal state and
closes the job's run in the same transaction. Only the holder of the store's scheduler lease
reconciles and launches: two services on one store would otherwise each count only their own
jobs against the same slots and GPUs. The store checks the lease again inside each launch's
claim, and a service that takes the lease back first adopts what was launched meanwhile.

The process functions (spawn, is_same_process, terminate_job) are collaborators, so scheduling,
cancel and reconciliation can be tested without starting horovodrun.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from db.entities import JobRecord, JobStatus, LeaseRecord, RunStatus
from db.errors import EasgdError, InvalidTransition, LeaseHeld, LeaseLost, NotFound
from db.store import Store
from service import logs, processes, reachability
from service.settings import ServiceSettings
from training.launch.argv import LOCAL_HOSTS, horovodrun_argv
from training.run import checkpoint, signals
from training.schema import ConfigError, ResourcesConfig, parse_config, topology_problem
from training.schema.hosts import Hosts, HostsError, format_hosts, host_of_rank, parse_hosts

LOST_MESSAGE = "lost: the service stopped while it ran"
CANCELLED_MESSAGE = "cancelled by request"
FINISHED_FIRST_MESSAGE = "its run finished before the cancel asked for reached it"
# How long a scale waits for the checkpoint it asked for.
SCALE_WAIT_SECONDS = 120
# What the training program prints when it gives up (training/__main__.py, training/run/program.py),
# after Horovod's per-rank prefix ("[0]<stderr>:", maybe a timestamp before it).
_REASON = re.compile(
    r"^(?:.*?\[\d+\]<std(?:out|err)>:)?easgd: ((?:run failed|invalid configuration): .*)$"
)
# Horovod's own account when a rank dies without a word (killed, say).
_HOROVOD_REASON = re.compile(r"^(Process \d+ exit with status code -?\d+\.)$")
_REASON_SCAN_LINES = 400
# horovodrun's last words when ranks failed: the first one to, by time.
_FIRST_FAILED = re.compile(r"^Process name: (\d+)\nExit code: (-?\d+)$", re.MULTILINE)
# The service's own secrets (EASGD_API_TOKEN...): with remote hosts, Horovod puts a job's
# environment on the ssh command line. The job's own launch token is set after this filter.
_SECRET_ENV = re.compile(r"^EASGD_\w*TOKEN$")


class SchedulerBusy(EasgdError, RuntimeError):
    """Another live service holds this store's scheduler lease."""

    http_status = 409

    def __init__(self, lease: LeaseRecord):
        super().__init__(
            f"another easgd service ({lease.holder}, pid {lease.pid} on {lease.hostname}) "
            "schedules jobs from this store; stop it, or use another EASGD_HOME/EASGD_DB_URL"
        )
        self.lease = lease


def first_failed(log_text: str) -> tuple[int, int] | None:
    """(rank, exit code) of the rank that failed first in the log's last attempt, as horovodrun
    names it; None if it named none."""
    found = _FIRST_FAILED.findall(log_text)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def failure_reason(log_text: str) -> str | None:
    """The training program's own one-line reason in a job's log, or Horovod's if it has none."""
    ours: list[str] = []
    horovod: str | None = None
    for line in log_text.splitlines():
        line = line.rstrip()
        if m := _REASON.match(line):
            if m.group(1) not in ours:
                ours.append(m.group(1))
        elif horovod is None and (m := _HOROVOD_REASON.match(line)):
            horovod = m.group(1)
    return "; ".join(ours) if ours else horovod


@dataclass
class Allocation:
    hosts: Hosts
    gpus: list[str] = field(default_factory=list)

    def host_arg(self) -> str:
        return format_hosts(self.hosts)


@dataclass
class Handle:
    job_id: int
    pid: int
    start_time: float
    allocation: Allocation
    token: str | None = None
    popen: subprocess.Popen | None = None  # None when adopted after a restart


Spawn = Callable[..., tuple[subprocess.Popen, float]]
IsSameProcess = Callable[[int | None, float | None], bool]
TerminateJob = Callable[[str | None, int | None, float | None, float], int | None]


class Supervisor:
    def __init__(
        self,
        store: Store,
        settings: ServiceSettings,
        *,
        spawn: Spawn = processes.spawn,
        is_same_process: IsSameProcess = processes.is_same_process,
        terminate_job: TerminateJob = processes.terminate_job,
    ):
        self.store = store
        self.settings = settings
        self.handles: dict[int, Handle] = {}
        # Jobs asked to scale: (workers, the checkpoint step before the ask, when asked).
        self.scaling: dict[int, tuple[int, int, float]] = {}
        self._spawn = spawn
        self._is_same_process = is_same_process
        self._terminate_job = terminate_job
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease_token: str | None = None
        self._lease_renewed = 0.0
        self._hostname = socket.gethostname()

    # ------------------------------------------------------------------ the store's lease
    @property
    def holds_lease(self) -> bool:
        return self._lease_token is not None

    def acquire_lease(self) -> LeaseRecord:
        """Become this store's one scheduler, or raise SchedulerBusy naming the one there is.

        A holder on this host whose process is gone (killed -9) is replaced at once; one
        elsewhere only once its lease has expired.
        """
        token = self._lease_token or secrets.token_hex(16)
        me = os.getpid()
        try:
            lease = self.store.take_lease(
                holder=self.settings.url,
                token=token,
                pid=me,
                pid_start_time=psutil.Process(me).create_time(),
                hostname=self._hostname,
                ttl=self.settings.lease_seconds,
                holder_gone=self._holder_gone,
            )
        except LeaseHeld as exc:
            raise SchedulerBusy(exc.lease) from None
        self._lease_token, self._lease_renewed = token, time.monotonic()
        return lease

    def _holder_gone(self, lease: LeaseRecord) -> bool:
        return lease.hostname == self._hostname and not self._is_same_process(
            lease.pid, lease.pid_start_time
        )

    def _keep_lease(self) -> None:
        """Renew the lease, or take it back; a lease taken back means another service may have
        launched jobs meanwhile, so the store's running jobs are adopted before any launch.

        Renewing succeeds only while the row still carries our random token, that is while no
        other service has held the lease since.
        """
        if time.monotonic() - self._lease_renewed < self.settings.lease_seconds / 6:
            return
        if self._lease_token and self.store.renew_lease(
            self._lease_token, self.settings.lease_seconds
        ):
            self._lease_renewed = time.monotonic()
            return
        lost = self._lease_token is not None
        self._lease_token = None
        try:
            self.acquire_lease()
        except SchedulerBusy as exc:
            if lost:
                print(f"easgd service: not scheduling any more: {exc}", file=sys.stderr, flush=True)
            self._lease_renewed = time.monotonic()  # try again later, not on every tick
            return
        self._adopt_running()

    # ------------------------------------------------------------------ life cycle
    def reconcile(self) -> list[str]:
        """Before anything new is accepted: take the store's lease, adopt live jobs, fail the
        ones that were lost (their runs with them)."""
        if not self.holds_lease:
            self.acquire_lease()
        return self._adopt_running()

    def _adopt_running(self) -> list[str]:
        """Supervise every running job of the store that this service does not yet watch, so
        that their slots and GPUs count; fail the ones whose processes are gone."""
        notes = []
        for job in self.store.list_jobs(status=JobStatus.RUNNING, limit=100000):
            if job.id in self.handles:
                continue
            if self._is_same_process(job.pid, job.pid_start_time):
                self.handles[job.id] = Handle(
                    job.id,
                    job.pid,
                    job.pid_start_time,
                    self._allocation_of(job),
                    job.launch_token,
                )
                notes.append(f"job {job.id}: still running (pid {job.pid}), supervised again")
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
            if self._lease_token:
                try:
                    self.store.release_lease(self._lease_token)
                except Exception as exc:  # noqa: BLE001 - it expires on its own
                    print(f"easgd service: lease not released: {exc}", file=sys.stderr)
                self._lease_token = None

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
            if self.holds_lease:
                self._launch_queued()

    def _poll(self, handle: Handle) -> tuple[bool, int | None]:
        """(finished, exit code); an adopted process's exit code is unknown."""
        if handle.popen is not None:
            code = handle.popen.poll()
            return code is not None, code
        return not self._is_same_process(handle.pid, handle.start_time), None

    def _watch_running(self) -> None:
        self._scale_when_checkpointed()
        for job_id, handle in list(self.handles.items()):
            try:
                job = self.store.get_job(job_id)
            except NotFound:
                self.handles.pop(job_id, None)
                continue
            if job.cancel_requested and job.status is JobStatus.RUNNING:
                self._cancel_running(job, handle)
                continue
            done, code = self._poll(handle)
            if not done:
                continue
            self.handles.pop(job_id, None)
            if code is None:  # adopted: judge by what the run recorded
                code = self._exit_from_run(job)
            if code == 0:
                self._finish(job, JobStatus.SUCCEEDED, exit_code=0)
            else:
                why_not = self._restart(job, handle, code)
                if why_not is not None:
                    self._fail(job, code, why_not)

    def _fail(self, job: JobRecord, code: int | None, why_not_restarted: str = "") -> None:
        """Failed, with the program's own reason first, then the exit code and the log's end."""
        what = f"exit code {code}" if code is not None else "exited after a restart"
        if why_not_restarted:
            what += f" ({why_not_restarted})"
        reason = failure_reason(logs.tail(job.log_path, _REASON_SCAN_LINES))
        message = f"{what}; last lines of the log:\n{logs.tail(job.log_path, 20)}"
        self._finish(
            job,
            JobStatus.FAILED,
            exit_code=code,
            message=f"{reason}\n{message}" if reason else message,
            run_error=reason or what,
        )

    def _restart(self, job: JobRecord, handle: Handle, code: int | None) -> str | None:
        """Relaunch a job whose ranks failed from its run's last complete checkpoint, with as
        many workers as can be placed now (resources.min_workers at least). None when it did;
        else why not ("" when a restart does not apply): a configuration error (exit 2), no
        checkpoint, its restarts spent (resources.max_restarts), the same failure at the same
        step as the attempt before, or too few free slots."""
        resources = json.loads(job.config).get("resources", {})
        # A job queued before the field existed has the schema's default.
        limit = int(resources.get("max_restarts", ResourcesConfig().max_restarts))
        floor = int(resources.get("min_workers") or job.workers)
        if code in (None, 0, 2) or not job.run_dir or not job.run_id or limit <= 0:
            return ""
        found = checkpoint.latest(Path(job.run_dir))
        try:
            events = self.store.events(job.run_id)
        except NotFound:
            return ""
        restarts = sum(e.kind == "restarted" for e in events)
        failed = [(e.message, e.step) for e in events if e.kind == "failed"]
        if found is None:
            return "not restarted: the run has no complete checkpoint yet"
        if restarts >= limit:
            return f"not restarted: its {limit} restarts (resources.max_restarts) are spent"
        if len(failed) >= 2 and failed[-1] == failed[-2]:
            return "not restarted: the same failure at the same step as the attempt before"
        # Nothing of the failed attempt may survive it (horovodrun can leave ranks behind).
        self._terminate_job(
            handle.token, handle.pid, handle.start_time, self.settings.grace_seconds
        )
        tail = logs.tail(job.log_path, _REASON_SCAN_LINES)
        first = first_failed(tail)
        down, suspect = self._hosts_to_leave_out(handle.allocation.hosts, first)
        left_out = {**suspect, **down}
        allocation = None
        for exclude in (set(left_out), set(down)):
            allocation = next(
                (
                    a
                    for n in range(job.workers, floor - 1, -1)
                    if (a := self._allocate(job, n, exclude))
                ),
                None,
            )
            if allocation is not None:
                break
        if allocation is None:
            return f"not restarted: fewer than {floor} slots free (resources.min_workers)"
        workers = sum(allocation.hosts.values())
        step = int(found[1]["step"])
        cause = failure_reason(tail) or f"exit code {code}"
        if first and len(handle.allocation.hosts) > 1:
            host = host_of_rank(handle.allocation.hosts, first[0])
            cause = f"rank {first[0]} on {host} failed first (exit code {first[1]})"
        skipped = [f"{h} ({why})" for h, why in left_out.items() if h not in allocation.hosts]
        note = (
            f"{cause}; relaunched from the checkpoint at step {step} with {workers} of "
            f"{job.workers} workers (restart {restarts + 1} of {limit})"
        )
        if skipped:
            note += f"; left out {', '.join(skipped)}"
        self.store.add_event(job.run_id, "restarted", note, step)
        with Path(job.log_path).open("a") as log:
            log.write(f"easgd service: job {job.id}: {note}\n")
        self._start(job, allocation, ["--resume", job.run_dir], workers)
        self.store.update_job(job.id, message=f"restarted {restarts + 1} time(s); last: {note}")
        return None

    def _hosts_to_leave_out(
        self, placed: Hosts, first: tuple[int, int] | None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The hosts a relaunch must avoid (they no longer answer ssh) and those it should (as
        Horovod's elastic mode does, the host whose rank failed first, when the job had others;
        it is taken back only if the rest cannot hold resources.min_workers), each with why;
        `first` is horovodrun's (rank, exit code) of the rank that failed first."""
        suspect: dict[str, str] = {}
        if len(placed) > 1 and first:
            if (host := host_of_rank(placed, first[0])) is not None:
                suspect[host] = f"its rank {first[0]} failed first"
        down = reachability.unreachable(placed, self.settings.ssh_options)
        return {h: "it does not answer ssh" for h in down}, suspect

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
            allocation = self._allocate(job)
            if allocation is None:
                return  # strict order: a later job does not overtake the head of the queue
            try:
                self._launch(job, allocation)
            except LeaseLost as exc:
                print(f"easgd service: launch refused: {exc}", file=sys.stderr, flush=True)
                self._lease_renewed = float("-inf")  # check it on the next pass
                return

    # ------------------------------------------------------------------ capacity
    def _used(self) -> tuple[dict[str, int], set[str]]:
        hosts: Hosts = {}
        gpus: set[str] = set()
        for h in self.handles.values():
            for name, n in h.allocation.hosts.items():
                hosts[name] = hosts.get(name, 0) + n
            gpus.update(h.allocation.gpus)
        return hosts, gpus

    def placement_problem(
        self, workers: int, gpus_per_worker: int = 0, requested: Hosts | None = None
    ) -> str | None:
        """Why this service can never place such a job, or None when it can once slots are free.

        The API asks before it queues a job; the scheduler asks again before each placement,
        since the service may have restarted with fewer hosts, slots or GPUs since.
        """
        ours = self.settings.hosts
        mine = f"this service has {format_hosts(ours)}"
        if requested:
            unknown = [h for h in requested if h not in ours]
            if unknown:
                return (
                    f"resources.hosts: {', '.join(unknown)} is not among this service's hosts; "
                    f"{mine}; name those, or start the service with --hosts"
                )
            over = [f"{h}:{n}" for h, n in requested.items() if n > ours[h]]
            if over:
                return f"resources.hosts: {', '.join(over)} asks more slots than {mine}"
        elif workers > self.settings.slots:
            return (
                f"resources.workers: needs {workers} slots; {mine} ({self.settings.slots} "
                "slots); lower the workers, or start the service with more --slots or --hosts"
            )
        gpus = workers * gpus_per_worker
        if gpus > len(self.settings.gpus):
            return (
                f"resources.gpus_per_worker: needs {gpus} GPUs; this service has "
                f"{len(self.settings.gpus)}"
            )
        return None

    def _allocate(
        self, job: JobRecord, workers: int | None = None, exclude: Collection[str] = ()
    ) -> Allocation | None:
        """Where `workers` (default: the job's) ranks go now, or None until slots are free;
        never on the hosts in `exclude`."""
        workers = workers or job.workers
        resources = json.loads(job.config).get("resources", {})
        gpus_per_worker = int(resources.get("gpus_per_worker", 0))
        try:
            requested = parse_hosts(resources["hosts"]) if resources.get("hosts") else None
        except HostsError as exc:  # a job queued before hosts had one grammar
            problem, requested = str(exc), None
        else:
            problem = self.placement_problem(workers, gpus_per_worker, requested)
        if problem and workers == job.workers:
            self._finish(job, JobStatus.FAILED, expected=JobStatus.QUEUED, message=problem)
            return None
        if problem:
            return None
        used_hosts, used_gpus = self._used()
        gpus_needed = workers * gpus_per_worker
        gpus = [g for g in self.settings.gpus if g not in used_gpus][:gpus_needed]
        if len(gpus) < gpus_needed:
            return None
        remaining = workers
        hosts: Hosts = {}
        for name, cap in (requested or self.settings.hosts).items():
            if name in exclude:
                continue
            take = min(cap, self.settings.hosts[name] - used_hosts.get(name, 0), remaining)
            if take > 0:
                hosts[name] = take
                remaining -= take
            if remaining == 0:
                return Allocation(hosts, gpus)
        return None

    def _allocation_of(self, job: JobRecord) -> Allocation:
        # A running job's hosts are the placement it was given: always host:slots.
        hosts = parse_hosts(job.hosts) if job.hosts else {"localhost": job.workers}
        return Allocation(hosts, job.gpus.split(",") if job.gpus else [])

    # ------------------------------------------------------------------ launch and finish
    def command(self, job: JobRecord, allocation: Allocation, args: list[str]) -> list[str]:
        """Through training.launch.argv, the builder the benchmarks and the tests use too: as many
        ranks as the allocation places."""
        return horovodrun_argv(
            sum(allocation.hosts.values()),
            [sys.executable, "-m", "training", *args, "--source", job.source],
            allocation.hosts,
            network_interface=self.settings.network_interface,
            ssh_port=self.settings.ssh_port,
            ssh_identity_file=self.settings.ssh_identity_file,
        )

    def _launch(self, job: JobRecord, allocation: Allocation) -> None:
        """Claim the job (refused if it was asked to cancel, or the lease is no longer ours:
        LeaseLost), then start it."""
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
                expected=JobStatus.QUEUED,
                lease_token=self._lease_token,
            )
        except InvalidTransition:
            return  # cancelled meanwhile
        self._start(job, allocation, ["--config", str(config_path), "--out", str(run_dir)])

    def _start(
        self, job: JobRecord, allocation: Allocation, args: list[str], workers: int | None = None
    ) -> None:
        """Start one attempt of a running job: its processes carry a fresh launch token."""
        token = secrets.token_hex(16)
        job = self.store.update_job(
            job.id,
            gpus=",".join(allocation.gpus) or None,
            hosts=allocation.host_arg(),
            launch_token=token,
        )
        env = {
            **{k: v for k, v in os.environ.items() if not _SECRET_ENV.match(k)},
            processes.JOB_ENV: str(job.id),
            processes.TOKEN_ENV: token,
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "EASGD_SOURCE": job.source,
        }
        if self.store.url:
            env["EASGD_DB_URL"] = self.store.url
        if allocation.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(allocation.gpus)
        argv = self.command(job, allocation, args)
        log_path = Path(job.log_path)
        with log_path.open("a") as log:
            log.write(f"easgd service: job {job.id}: {' '.join(argv)}\n")
        try:
            popen, started = self._spawn(argv, env, log_path, cwd=log_path.parent)
        except OSError as exc:
            message = f"could not start horovodrun: {exc}"
            self._finish(job, JobStatus.FAILED, message=message, run_error=message)
            return
        self.handles[job.id] = Handle(job.id, popen.pid, started, allocation, token, popen)
        self.store.update_job(job.id, pid=popen.pid, pid_start_time=started)

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
        return True

    def _cancel_running(self, job: JobRecord, handle: Handle) -> None:
        ended_by = self._terminate_job(
            handle.token, handle.pid, handle.start_time, self.settings.grace_seconds
        )
        code = None
        if handle.popen is not None:
            try:
                code = handle.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.handles.pop(job.id, None)
        if self._exit_from_run(job) == 0:  # the run finished before the cancel reached it
            self._finish(job, JobStatus.SUCCEEDED, exit_code=0, message=FINISHED_FIRST_MESSAGE)
            return
        # The sweep reaps the root itself, after which Popen reads 0 whatever happened: the
        # signal that ended it is what happened; the root's own code only if it ended first.
        self._finish(
            job,
            JobStatus.CANCELLED,
            message=CANCELLED_MESSAGE,
            exit_code=ended_by if ended_by is not None else code,
            run_error=CANCELLED_MESSAGE,
        )

    # ------------------------------------------------------------------ checkpoint, scale
    def _running_here(self, job_id: int, what: str) -> tuple[JobRecord, Handle]:
        job = self.store.get_job(job_id)
        handle = self.handles.get(job_id)
        if job.status is not JobStatus.RUNNING or handle is None:
            where = (
                "running under another service"
                if handle is None and job.status is (JobStatus.RUNNING)
                else job.status.value
            )
            raise InvalidTransition(
                f"job {job_id} is {where}; only a running job of this service can {what}"
            )
        return job, handle

    def _signal_ranks(self, handle: Handle) -> int:
        """SIGUSR1 to the job's training ranks on this host (not horovodrun, for which it is
        fatal)."""
        sent = 0
        for proc in processes.job_processes(handle.token, handle.pid, handle.start_time):
            try:
                if (
                    "HOROVOD_RANK" in proc.environ()
                    and "training" in proc.cmdline()
                    and processes.on_this_host(proc)
                ):
                    proc.send_signal(signal.SIGUSR1)
                    sent += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return sent

    def request_checkpoint(self, job_id: int) -> JobRecord:
        """Ask a running job's ranks for a checkpoint at the next step boundary they agree on
        (every 10 steps for ranks that all-reduce; at once on the center server)."""
        with self._lock:
            job, handle = self._running_here(job_id, "checkpoint")
            if not set(handle.allocation.hosts) <= LOCAL_HOSTS and job.run_dir:
                Path(job.run_dir).mkdir(parents=True, exist_ok=True)
                signals.request(Path(job.run_dir))  # rank 0 may run on another host
                self._signal_ranks(handle)
                return job
            if self._signal_ranks(handle) == 0:
                raise InvalidTransition(f"job {job_id} has no training rank running yet")
            return job

    def scale(self, job_id: int, workers: int) -> JobRecord:
        """Checkpoint a running job now, then relaunch it from that checkpoint with `workers`."""
        with self._lock:
            job, handle = self._running_here(job_id, "scale")
            config = json.loads(job.config)
            resized = {**config, "resources": {**config.get("resources", {}), "workers": workers}}
            try:  # what the relaunch would refuse (backup workers, groups, a matrix, hosts)
                checked = parse_config(resized)
                problem = topology_problem(checked, workers)
                if problem:
                    raise ConfigError([problem])
            except ConfigError as exc:
                raise ConfigError([f"--workers {workers}: {p}" for p in exc.problems]) from None
            res = checked.resources
            problem = self.placement_problem(workers, res.gpus_per_worker, res.host_map)
            if problem:
                raise InvalidTransition(problem.replace("resources.workers", "--workers"))
            self.handles.pop(job_id)  # its own slots count as free for the new size
            try:
                fits = self._allocate(job, workers) is not None
            finally:
                self.handles[job_id] = handle
            if not fits:
                raise InvalidTransition(
                    f"--workers {workers}: not enough free slots now; the job goes on as it is"
                )
            found = checkpoint.latest(Path(job.run_dir)) if job.run_dir else None
            if self._signal_ranks(handle) == 0:
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
        handle = self.handles.get(job_id)
        job = self.store.get_job(job_id)
        if handle is None or job.status is not JobStatus.RUNNING:
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
        self.handles.pop(job_id)
        self._terminate_job(
            handle.token, handle.pid, handle.start_time, self.settings.grace_seconds
        )
        allocation = self._allocate(job, workers)
        if allocation is None:  # its own slots are free again: only another job took them
            allocation = self._allocate(job)
        step = int(found[1]["step"])
        placed = sum(allocation.hosts.values()) if allocation else 0
        self.scaling.pop(job_id)
        note = f"scaled from {found[1].get('workers')} to {placed} workers at step {step}"
        self.store.add_event(job.run_id, "scaled", note, step)
        self.store.update_job(job_id, workers=placed or job.workers, message=note)
        if allocation is None:
            self._fail(job, None, "not relaunched: its slots were taken while it scaled")
            return
        self._start(self.store.get_job(job_id), allocation, ["--resume", job.run_dir])

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
