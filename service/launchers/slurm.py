"""Slurm: one attempt of a job is one batch job (`sbatch`), whose ranks start under horovodrun on
the nodes Slurm allocated.

The batch script asks for the attempt's workers as tasks (so many per node with
`--tasks-per-node`, GPUs with `--gpus-per-task`), learns where Slurm put them from one `srun`
step that names each task's node, and hands that host list to horovodrun; the ranks reach the
other nodes over ssh, as horovodrun reaches any host, and one more step per node ends, with the
job, the ranks Slurm does not track (service/launchers/slurm_reaper.py). States come from
`scontrol show job` (kept `MinJobAge` seconds after it ends; an ended state is final and not
asked again); a stop is `scancel`. The
batch job is named after the attempt's token, so that a restarted service finds it again by
name (`squeue --name`), with nothing more in the store than horovodrun's attempts keep.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from service import logs
from service.launchers.base import (
    Allocation,
    Attempt,
    Failure,
    FirstFailure,
    Launched,
    Launcher,
    LaunchError,
)
from service.launchers.horovodrun import REASON_SCAN_LINES, failure_reason, first_failed
from service.processes import TOKEN_ENV
from service.settings import ServiceSettings
from training.launch.argv import horovodrun_argv
from training.schema.hosts import Hosts, host_of_rank, parse_hosts

# Slurm's states while a job may still run (squeue lists it).
WAITING = {"PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
ACTIVE = WAITING | {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
# What each way of ending says, for the job's reason when the program said nothing.
ENDINGS = {
    "COMPLETED": None,
    "FAILED": "the batch job failed",
    "CANCELLED": "Slurm cancelled the batch job",
    "TIMEOUT": "the batch job reached its time limit",
    "NODE_FAIL": "a node of the batch job failed",
    "PREEMPTED": "the batch job was preempted",
    "OUT_OF_MEMORY": "the batch job ran out of memory",
    "BOOT_FAIL": "a node of the batch job failed to boot",
    "DEADLINE": "the batch job reached its deadline",
}
SLURM_TIMEOUT = 30.0
# How long a cancelled job may take to end (Slurm's KillWait is 30 s by default).
STOP_WAIT = 90.0
# The least time between two `scontrol` reads of one job: the supervisor polls twice a second,
# and a busy controller should not answer a service's every poll.
READ_EVERY = 3.0
# The line the batch script writes once it knows where Slurm put the tasks.
_HOSTS_LINE = re.compile(r"^easgd service: Slurm job (\d+) on (\S+)$")
# sinfo's short node states of a node that cannot take ranks ("*": it does not answer).
_NODE_DOWN = ("down", "drain", "drng", "fail", "failg", "maint", "boot", "pow_dn", "unk")


class SlurmError(LaunchError):
    """A Slurm command failed; the message is Slurm's own, in one line. `answered`: Slurm said
    no (a refusal to act on), rather than not answering at all (asked again later)."""

    def __init__(self, message: str, answered: bool = True):
        super().__init__(message)
        self.answered = answered


@dataclass
class SlurmJob:
    """What the service knows of its batch job: Slurm's id, its state and why (Slurm's reason
    while it waits), its nodes, and once it has ended, its exit status. `gone`: Slurm no longer
    keeps it (ended more than MinJobAge ago, while the service was away)."""

    job_id: str
    state: str = "PENDING"
    reason: str | None = None
    nodes: str | None = None
    exit_code: int | None = None
    read_at: float = 0.0
    cancelled_here: bool = False
    gone: bool = False

    @property
    def active(self) -> bool:
        return not self.gone and self.state in ACTIVE


def run_slurm(argv: list[str], env: dict | None = None) -> str:
    """A Slurm command's output; SlurmError with its own message when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SLURM_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"{argv[0]}: no answer in {SLURM_TIMEOUT:g} s; is slurmctld up, and SLURM_CONF "
            f"(received: {os.environ.get('SLURM_CONF', 'unset')}) the cluster's?",
            answered=False,
        ) from None
    except OSError as exc:
        raise SlurmError(
            f"{argv[0]}: {exc.strerror or exc}; is Slurm installed here?", answered=False
        ) from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())
        raise SlurmError(f"{argv[0]}: {said or f'exit status {done.returncode}'}")
    return done.stdout


def job_name(token: str) -> str:
    return f"easgd-{token}"


def scheduler_job(slurm_id: str) -> str:
    """The store's name of a batch job, read back by `slurm_id_of`."""
    return f"slurm {slurm_id}"


def slurm_id_of(stored: str | None) -> str | None:
    if stored and stored.startswith("slurm ") and stored[6:].isdigit():
        return stored[6:]
    return None


def placed(log_path: Path | None, slurm_id: str) -> Hosts | None:
    """Where the batch job `slurm_id` put its ranks, from the line its script wrote near the
    top of its attempt (the log's tail may be all training by then)."""
    found = None
    if log_path is None or not log_path.exists():
        return None
    with log_path.open(errors="replace") as log:
        for line in log:
            m = _HOSTS_LINE.match(line.rstrip("\n"))
            if m and m.group(1) == slurm_id:
                found = m.group(2)
    return parse_hosts(found) if found else None


def refusal(exc: SlurmError) -> str:
    """Slurm's own reason in a refused submission, without sbatch's prefixes."""
    text = str(exc)
    for prefix in ("sbatch: ", "sbatch: error: ", "Batch job submission failed: "):
        text = text.removeprefix(prefix)
    return text


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol show job -o`'s one line as a mapping of its KEY=VALUE words (the fields read
    here hold no spaces)."""
    fields: dict[str, str] = {}
    for word in text.split():
        if "=" in word:
            key, value = word.split("=", 1)
            fields[key] = value
    return fields


def minutes(limit: str) -> int | None:
    """Slurm's time format in whole minutes, rounded up; None for "infinite". The forms are
    "minutes", "minutes:seconds", "hours:minutes:seconds", and with days "days-hours",
    "days-hours:minutes", "days-hours:minutes:seconds"."""
    if limit in ("infinite", "UNLIMITED", "n/a"):
        return None
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        h, m, s = parts
    else:
        h, m, s = 0, parts[0], parts[1] if len(parts) == 2 else 0
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


def max_time(partition: str | None) -> tuple[str, int | None]:
    """The partition (the default one when None) and its MaxTime in minutes (None: unlimited)."""
    for line in run_slurm(["sinfo", "-h", "-o", "%P %l"]).splitlines():
        name, _, limit = line.partition(" ")
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            return name.rstrip("*"), minutes(limit.strip())
    raise SlurmError(f"sinfo: no partition {partition or '(default)'}")


def capacity(partition: str | None) -> int:
    """The CPUs of the partition (or of every partition), what the service may hand out."""
    argv = ["sinfo", "-h", "-o", "%C"] + ([f"--partition={partition}"] if partition else [])
    total = 0
    for line in run_slurm(argv).split():
        total += int(line.split("/")[-1])  # allocated/idle/other/total
    if not total:
        where = f"partition {partition}" if partition else "the cluster"
        raise SlurmError(f"sinfo: {where} has no CPUs (received: {partition!r})")
    return total


class SlurmLauncher(Launcher):
    def __init__(self, settings: ServiceSettings):
        self.settings = settings

    # -- the batch job ---------------------------------------------------------------------------

    def script(self, attempt: Attempt) -> str:
        """The batch script: horovodrun's host list from where Slurm put the tasks (one srun
        step that names each task's node), then horovodrun on it."""
        program = horovodrun_argv(
            attempt.allocation.ranks,
            self.program(attempt),
            {"HOSTS": 1},
            pin_loopback=False,
            network_interface=self.settings.network_interface,
            ssh_port=self.settings.ssh_port,
            ssh_identity_file=self.settings.ssh_identity_file,
        )
        at = program.index("-H") + 1
        line = " ".join(shlex.quote(a) for a in program[:at])
        line += ' "$hosts" ' + " ".join(shlex.quote(a) for a in program[at + 1 :])
        return (
            "#!/bin/bash\n"
            "set -euo pipefail\n"
            'hosts=$(srun --ntasks="$SLURM_NTASKS" hostname | sort | uniq -c | '
            "awk '{print $2\":\"$1}' | paste -sd, -)\n"
            'echo "easgd service: Slurm job $SLURM_JOB_ID on $hosts"\n'
            # One step per node that ends, with the job, the ranks Slurm does not track.
            'srun --overlap --ntasks-per-node=1 --nodes="$SLURM_NNODES" '
            f"{shlex.quote(sys.executable)} -m service.launchers.slurm_reaper "
            f'"${TOKEN_ENV}" &\n'
            f"cd {shlex.quote(str(attempt.workdir))}\n"
            f"exec {line}\n"
        )

    def resources(
        self,
        workers: int,
        gpus_per_worker: int = 0,
        exclude: Collection[str] = (),
        time_limit: int | None = None,
    ) -> list[str]:
        """What an attempt asks of Slurm, the same for a submission and for its `--test-only`
        check."""
        args = [f"--ntasks={workers}"]
        if self.settings.tasks_per_node:
            args.append(f"--ntasks-per-node={self.settings.tasks_per_node}")
        if gpus_per_worker:
            args.append(f"--gpus-per-task={gpus_per_worker}")
        if self.settings.partition:
            args.append(f"--partition={self.settings.partition}")
        if self.settings.account:
            args.append(f"--account={self.settings.account}")
        if exclude:
            args.append(f"--exclude={','.join(sorted(exclude))}")
        if time_limit is not None:
            args.append(f"--time={time_limit}")
        return args

    def sbatch_args(self, attempt: Attempt) -> list[str]:
        return [
            "sbatch",
            "--parsable",
            f"--job-name={job_name(attempt.token)}",
            *self.resources(
                attempt.allocation.ranks,
                attempt.config.resources.gpus_per_worker,
                attempt.allocation.avoid,
                attempt.config.resources.time_limit_minutes,
            ),
            f"--output={attempt.log_path}",
            "--open-mode=append",
            "--export=ALL",
            # A relaunch is the service's (from the checkpoint, without the node that failed):
            # Slurm's own requeue would start the attempt again from its beginning.
            "--no-requeue",
        ]

    def start(self, attempt: Attempt) -> Launched:
        self.prepare(attempt)
        path = attempt.job_dir / "job.sbatch"
        path.write_text(self.script(attempt))
        argv = [*self.sbatch_args(attempt), str(path)]
        with attempt.log_path.open("a") as log:
            log.write(f"easgd service: job {attempt.job_id}: {' '.join(argv)}\n")
        try:
            out = run_slurm(argv, self.environment(attempt))
        except SlurmError as exc:
            raise SlurmError(f"Slurm refused the batch job: {refusal(exc)}") from None
        slurm_id = out.strip().split(";")[0]
        with attempt.log_path.open("a") as log:
            log.write(f"easgd service: job {attempt.job_id}: Slurm job {slurm_id}\n")
        job = SlurmJob(slurm_id)
        return Launched.of(attempt, None, time.time(), job, scheduler_job(slurm_id))

    # -- where Slurm may put it --------------------------------------------------------------------

    def test_only(
        self,
        workers: int,
        gpus_per_worker: int,
        exclude: Collection[str] = (),
        time_limit: int | None = None,
    ) -> str:
        """Slurm's reason for never running such a job (`sbatch --test-only`), or "" (also when
        Slurm does not answer now: its own submission will say)."""
        asked = self.resources(workers, gpus_per_worker, exclude, time_limit)
        argv = ["sbatch", "--test-only", *asked]
        try:
            run_slurm([*argv, "--wrap=true"])
        except SlurmError as exc:
            return refusal(exc) if exc.answered else ""
        return ""

    def placement_problem(
        self,
        settings: ServiceSettings,
        workers: int,
        gpus_per_worker: int = 0,
        requested: Hosts | None = None,
        time_limit: int | None = None,
    ) -> str | None:
        """Slurm's own answer, asked before the job is queued: a job it could never run is
        refused with its reason, not left pending for ever."""
        if requested:
            return "resources.hosts: Slurm places the ranks under a Slurm service; leave it out"
        if time_limit is not None:  # over MaxTime, Slurm may queue it and never run it
            try:
                partition, most = max_time(self.settings.partition)
            except SlurmError as exc:
                if exc.answered:
                    return f"resources.time_limit_minutes: {exc}"
                partition, most = "", None  # no answer now: sbatch will say
            if most is not None and time_limit > most:
                return (
                    f"resources.time_limit_minutes: partition {partition} allows at most {most} "
                    f"minutes (its MaxTime; received: {time_limit})"
                )
        why = self.test_only(workers, gpus_per_worker, (), time_limit)
        if why and time_limit is not None and "time limit" in why:
            return f"resources.time_limit_minutes: Slurm refuses {time_limit} minutes: {why}"
        if why:
            return f"resources.workers: Slurm refuses {workers} workers: {why}"
        return None

    def allocate(
        self,
        settings: ServiceSettings,
        in_use: Iterable[Allocation],
        workers: int,
        gpus_per_worker: int = 0,
        requested: Hosts | None = None,
        exclude: Collection[str] = (),
    ) -> Allocation | None:
        """Every job goes to Slurm at once: its queue, not the service's, decides the order. A
        relaunch that leaves nodes out gets an allocation only if Slurm could run it so (the time
        limit was checked at submit)."""
        if exclude and self.test_only(workers, gpus_per_worker, exclude):
            return None
        return Allocation({"slurm": workers}, [], sorted(exclude))

    # -- watching it -----------------------------------------------------------------------------

    def find(self, launched: Launched) -> SlurmJob | None:
        """The batch job, read again from Slurm at most every READ_EVERY seconds (by its id, or
        by its name for an attempt adopted from a store without it)."""
        job = launched.process
        if job is None:
            slurm_id = slurm_id_of(launched.scheduler_job)
            if slurm_id is None and launched.token:
                name = f"--name={job_name(launched.token)}"
                listed = run_slurm(["squeue", "-h", "-o", "%i", name]).split()
                slurm_id = listed[-1] if listed else None
            if slurm_id is None:
                return None
            job = launched.process = SlurmJob(slurm_id)
        if not job.active or time.time() - job.read_at < READ_EVERY:
            return job  # an ended job's state is final: no need to ask again
        job.read_at = time.time()  # a controller that does not answer is not asked at each poll
        try:
            shown = run_slurm(["scontrol", "show", "job", "-o", job.job_id])
        except SlurmError as exc:
            # Forgotten (MinJobAge after it ended), or the controller does not answer now: the
            # job is judged by its run, or read again later.
            job.gone = "Invalid job id" in str(exc)
            return job
        fields = parse_scontrol(shown)
        job.state = fields.get("JobState", job.state).split()[0]
        job.reason = fields.get("Reason") if fields.get("Reason") not in (None, "None") else None
        job.nodes = fields.get("NodeList") if fields.get("NodeList") != "(null)" else None
        code = fields.get("ExitCode")
        if code and job.state not in ACTIVE:
            status, signum = (int(x) for x in code.split(":"))
            job.exit_code = -signum if signum else status
        return job

    def alive(self, launched: Launched) -> bool:
        try:
            job = self.find(launched)
        except SlurmError:
            return True  # squeue did not answer: asked again at the next poll
        return job is not None and job.active

    def scheduler_state(self, launched: Launched) -> str | None:
        """ "PENDING (Resources)", "RUNNING on node[1-2]", "TIMEOUT": what squeue would show."""
        job = launched.process
        if job is None:
            return None
        if job.gone:
            return f"{job.state} (no longer kept by Slurm)"
        if job.reason:
            return f"{job.state} ({job.reason})"
        if job.nodes and job.state == "RUNNING":
            return f"{job.state} on {job.nodes}"
        return job.state

    def exit_code(self, launched: Launched) -> int | None:
        job = self.find(launched)
        if job is None or job.gone or job.state in ACTIVE:
            return None
        if job.state == "COMPLETED":
            return 0
        return job.exit_code or 1

    def cancelled_outside(self, launched: Launched) -> str | None:
        job = launched.process
        if job is not None and job.state == "CANCELLED" and not job.cancelled_here:
            return f"Slurm job {job.job_id} was cancelled outside the service (scancel)"
        return None

    def stop(self, launched: Launched, grace: float) -> int | None:
        """`scancel`: Slurm sends every step SIGTERM, then SIGKILL after its KillWait; the job
        ends CANCELLED. Waits until Slurm no longer runs any of it."""
        if isinstance(launched.process, SlurmJob):
            launched.process.read_at = 0.0  # what it is now, not up to READ_EVERY ago
        job = self.find(launched)
        if job is None:
            return None
        if not job.active:
            return self.exit_code(launched)
        job.cancelled_here = True
        run_slurm(["scancel", job.job_id])
        deadline = time.time() + grace + STOP_WAIT
        while True:
            job.read_at = 0.0
            if not self.alive(launched):
                return -15
            if time.time() > deadline:
                raise SlurmError(
                    f"scancel: Slurm job {job.job_id} still runs after {STOP_WAIT:g} s"
                )
            time.sleep(0.5)

    def signal_ranks(self, launched: Launched, signum: int) -> int:
        """horovodrun dies of SIGUSR1, and Slurm signals it with the ranks: none are signalled
        here, and rank 0 reads the request the supervisor leaves in the run directory."""
        return 0

    def signals_every_rank(self, launched: Launched) -> bool:
        return False

    def failure(self, launched: Launched) -> Failure:
        """The program's reason and Slurm's ending; the rank that failed first and its node,
        from the host list the batch script wrote."""
        job = self.find(launched)
        tail = logs.tail(launched.log_path, REASON_SCAN_LINES)
        ours = failure_reason(tail)
        slurm = ENDINGS.get(job.state) if job is not None else None
        reason = "; ".join(r for r in (ours, slurm) if r) or None
        first = first_failed(tail)
        hosts = placed(launched.log_path, job.job_id) if job is not None else None
        host = host_of_rank(hosts, first[0]) if hosts and first else None
        return Failure(reason, FirstFailure(*first, host) if first else None, hosts)

    def unreachable(self, hosts: Hosts) -> dict[str, str]:
        """The attempt's nodes (`hosts`, as its script named them) that Slurm has down, drained
        or not answering: a relaunch leaves them out (the allocation's `avoid`)."""
        argv = ["sinfo", "-h", "-N", "-o", "%N %t"]
        if self.settings.partition:
            argv.append(f"--partition={self.settings.partition}")
        try:
            listed = run_slurm(argv)
        except SlurmError:
            return {}
        down = {}
        for line in listed.splitlines():
            node, _, state = line.partition(" ")
            if node not in hosts:
                continue
            if state.endswith("*") or state.rstrip("*~#!%$@^-") in _NODE_DOWN:
                down[node] = f"Slurm has it {state}"
        return down
