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
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass

from service import logs
from service.launchers.base import Attempt, Failure, Launched, Launcher, LaunchError
from service.launchers.horovodrun import REASON_SCAN_LINES, failure_reason
from service.processes import TOKEN_ENV
from service.settings import ServiceSettings
from training.launch.argv import horovodrun_argv

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


class SlurmError(LaunchError):
    """A Slurm command failed; the message is Slurm's own, in one line."""


@dataclass
class SlurmJob:
    """What the service knows of its batch job: Slurm's id, its state, and once it has ended,
    its exit status."""

    job_id: str
    state: str = "PENDING"
    exit_code: int | None = None


def run_slurm(argv: list[str], env: dict | None = None) -> str:
    """A Slurm command's output; SlurmError with its own message when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SLURM_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"{argv[0]}: no answer in {SLURM_TIMEOUT:g} s; is slurmctld up, and SLURM_CONF "
            f"(received: {os.environ.get('SLURM_CONF', 'unset')}) the cluster's?"
        ) from None
    except OSError as exc:
        raise SlurmError(f"{argv[0]}: {exc.strerror or exc}; is Slurm installed here?") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())
        raise SlurmError(f"{argv[0]}: {said or f'exit status {done.returncode}'}")
    return done.stdout


def job_name(token: str) -> str:
    return f"easgd-{token}"


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol show job -o`'s one line as a mapping of its KEY=VALUE words (the fields read
    here hold no spaces)."""
    fields: dict[str, str] = {}
    for word in text.split():
        if "=" in word:
            key, value = word.split("=", 1)
            fields[key] = value
    return fields


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

    def sbatch_args(self, attempt: Attempt) -> list[str]:
        resources = attempt.config.resources
        args = [
            "sbatch",
            "--parsable",
            f"--job-name={job_name(attempt.token)}",
            f"--ntasks={attempt.allocation.ranks}",
            f"--output={attempt.log_path}",
            "--open-mode=append",
            "--export=ALL",
        ]
        if self.settings.tasks_per_node:
            args.append(f"--ntasks-per-node={self.settings.tasks_per_node}")
        if resources.gpus_per_worker:
            args.append(f"--gpus-per-task={resources.gpus_per_worker}")
        if self.settings.partition:
            args.append(f"--partition={self.settings.partition}")
        if self.settings.account:
            args.append(f"--account={self.settings.account}")
        return args

    def start(self, attempt: Attempt) -> Launched:
        self.prepare(attempt)
        path = attempt.job_dir / "job.sbatch"
        path.write_text(self.script(attempt))
        argv = [*self.sbatch_args(attempt), str(path)]
        with attempt.log_path.open("a") as log:
            log.write(f"easgd service: job {attempt.job_id}: {' '.join(argv)}\n")
        out = run_slurm(argv, self.environment(attempt))
        slurm_id = out.strip().split(";")[0]
        with attempt.log_path.open("a") as log:
            log.write(f"easgd service: job {attempt.job_id}: Slurm job {slurm_id}\n")
        return Launched.of(attempt, None, time.time(), SlurmJob(slurm_id))

    # -- watching it -----------------------------------------------------------------------------

    def find(self, launched: Launched) -> SlurmJob | None:
        """The batch job, read again from Slurm (by its name for an adopted attempt)."""
        job = launched.process
        if job is None and launched.token:
            listed = run_slurm(["squeue", "-h", "-o", "%i", f"--name={job_name(launched.token)}"])
            ids = listed.split()
            if not ids:
                return None
            job = launched.process = SlurmJob(ids[-1])
        if job is None or job.state not in ACTIVE:
            return job  # an ended job's state is final: no need to ask again
        try:
            shown = run_slurm(["scontrol", "show", "job", "-o", job.job_id])
        except SlurmError:
            return job  # no longer kept (MinJobAge): what was last read stands
        fields = parse_scontrol(shown)
        job.state = fields.get("JobState", job.state).split()[0]
        code = fields.get("ExitCode")
        if code and job.state not in ACTIVE:
            status, signum = (int(x) for x in code.split(":"))
            job.exit_code = -signum if signum else status
        return job

    def alive(self, launched: Launched) -> bool:
        job = self.find(launched)
        return job is not None and job.state in ACTIVE

    def exit_code(self, launched: Launched) -> int | None:
        job = self.find(launched)
        if job is None or job.state in ACTIVE:
            return None
        if job.state == "COMPLETED":
            return 0
        return job.exit_code or 1

    def stop(self, launched: Launched, grace: float) -> int | None:
        """`scancel`: Slurm sends every step SIGTERM, then SIGKILL after its KillWait; the job
        ends CANCELLED. Waits until Slurm no longer runs any of it."""
        job = self.find(launched)
        if job is None:
            return None
        if job.state not in ACTIVE:
            return self.exit_code(launched)
        run_slurm(["scancel", job.job_id])
        deadline = time.time() + grace + STOP_WAIT
        while self.alive(launched):
            if time.time() > deadline:
                raise SlurmError(
                    f"scancel: Slurm job {job.job_id} still runs after {STOP_WAIT:g} s"
                )
            time.sleep(0.5)
        return -15

    def signal_ranks(self, launched: Launched, signum: int) -> int:
        """horovodrun dies of SIGUSR1, and Slurm signals it with the ranks: none are signalled
        here, and rank 0 reads the request the supervisor leaves in the run directory."""
        return 0

    def signals_every_rank(self, launched: Launched) -> bool:
        return False

    def failure(self, launched: Launched) -> Failure:
        job = self.find(launched)
        ours = failure_reason(logs.tail(launched.log_path, REASON_SCAN_LINES))
        slurm = ENDINGS.get(job.state) if job is not None else None
        reason = "; ".join(r for r in (ours, slurm) if r) or None
        return Failure(reason)
