"""The launcher of today: horovodrun, on this machine or over ssh, one process tree per attempt.

The process functions (spawn, is_same_process, terminate_job) are collaborators, so that the
supervisor's scheduling, cancel and reconciliation can be tested without starting horovodrun.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import psutil

from service import logs, processes, reachability
from service.launchers.base import Attempt, Failure, FirstFailure, Launched, Launcher, LaunchError
from service.processes import IsSameProcess
from service.settings import ServiceSettings
from training.launch.argv import LOCAL_HOSTS, horovodrun_argv
from training.schema.hosts import Hosts, host_of_rank

# What the training program prints when it gives up (training/__main__.py, training/run/program.py),
# after Horovod's per-rank prefix ("[0]<stderr>:", maybe a timestamp before it).
_REASON = re.compile(
    r"^(?:.*?\[\d+\]<std(?:out|err)>:)?easgd: ((?:run failed|invalid configuration): .*)$"
)
# Horovod's own account when a rank dies without a word (killed, say).
_HOROVOD_REASON = re.compile(r"^(Process \d+ exit with status code -?\d+\.)$")
REASON_SCAN_LINES = 400
# horovodrun's last words when ranks failed: the first one to, by time.
_FIRST_FAILED = re.compile(r"^Process name: (\d+)\nExit code: (-?\d+)$", re.MULTILINE)

Spawn = Callable[..., tuple[subprocess.Popen, float]]
TerminateJob = Callable[[str | None, int | None, float | None, float], int | None]


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


class HorovodrunLauncher(Launcher):
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        spawn: Spawn = processes.spawn,
        is_same_process: IsSameProcess = processes.is_same_process,
        terminate_job: TerminateJob = processes.terminate_job,
    ):
        self.settings = settings
        self._spawn = spawn
        self._is_same_process = is_same_process
        self._terminate_job = terminate_job

    def command(self, attempt: Attempt) -> list[str]:
        """Through training.launch.argv, the builder the benchmarks and the tests use too: as many
        ranks as the allocation places."""
        return horovodrun_argv(
            attempt.allocation.ranks,
            self.program(attempt),
            attempt.allocation.hosts,
            network_interface=self.settings.network_interface,
            ssh_port=self.settings.ssh_port,
            ssh_identity_file=self.settings.ssh_identity_file,
        )

    def start(self, attempt: Attempt) -> Launched:
        self.prepare(attempt)
        env = self.environment(attempt)
        argv = self.command(attempt)
        with attempt.log_path.open("a") as log:
            log.write(f"easgd service: job {attempt.job_id}: {' '.join(argv)}\n")
        try:
            popen, started = self._spawn(argv, env, attempt.log_path, cwd=attempt.workdir)
        except OSError as exc:
            raise LaunchError(f"could not start horovodrun: {exc}") from None
        return Launched.of(attempt, popen.pid, started, popen)

    def alive(self, launched: Launched) -> bool:
        if launched.process is not None:
            return launched.process.poll() is None
        return self._is_same_process(launched.pid, launched.start_time)

    def exit_code(self, launched: Launched) -> int | None:
        return None if launched.process is None else launched.process.poll()

    def stop(self, launched: Launched, grace: float) -> int | None:
        ended_by = self._terminate_job(launched.token, launched.pid, launched.start_time, grace)
        code = None
        if launched.process is not None:
            try:
                code = launched.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # The sweep reaps the root itself, after which Popen reads 0 whatever happened: the
        # signal that ended it is what happened; the root's own code only if it ended first.
        return ended_by if ended_by is not None else code

    def signal_ranks(self, launched: Launched, signum: int) -> int:
        """Only the ranks on this host: horovodrun's own processes die of SIGUSR1."""
        sent = 0
        for proc in processes.job_processes(launched.token, launched.pid, launched.start_time):
            try:
                if (
                    "HOROVOD_RANK" in proc.environ()
                    and "training" in proc.cmdline()
                    and processes.on_this_host(proc)
                ):
                    proc.send_signal(signum)
                    sent += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return sent

    def signals_every_rank(self, launched: Launched) -> bool:
        return set(launched.allocation.hosts) <= LOCAL_HOSTS

    def failure(self, launched: Launched) -> Failure:
        tail = logs.tail(launched.log_path, REASON_SCAN_LINES)
        first = first_failed(tail)
        return Failure(
            failure_reason(tail),
            None
            if first is None
            else FirstFailure(*first, host_of_rank(launched.allocation.hosts, first[0])),
        )

    def unreachable(self, hosts: Hosts) -> dict[str, str]:
        """The hosts that no longer answer ssh: horovodrun would hang in its own check."""
        down = reachability.unreachable(hosts, self.settings.ssh_options)
        return {h: "it does not answer ssh" for h in down}
