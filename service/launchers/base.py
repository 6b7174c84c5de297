"""What the supervisor asks of whatever starts a job's ranks.

The supervisor decides when a job runs, where (the allocation), and whether a failed attempt is
relaunched; a launcher carries out one attempt: it turns the typed configuration into a command
line and an environment, starts the ranks, says whether they still run, signals and stops them,
and reads why they failed. horovodrun on local or ssh hosts is one launcher; a batch scheduler
(Slurm: `sbatch` returns at once with its own job id, states come from `squeue`, a stop is
`scancel`) or a user's own entrypoint is another class beside it, with no change to the
supervisor.

An attempt must be found again by a service that restarts while it runs: everything a launcher
needs to recognise it is in `Launched`, whose fields the store keeps with the job. A launcher
may also place the ranks itself (a scheduler does): `placement_problem` and `allocate` are then
its own.
"""

from __future__ import annotations

import abc
import os
import re
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service import placement, processes, workdir
from service.placement import Allocation
from service.settings import ServiceSettings
from training.schema import ExperimentConfig
from training.schema.hosts import Hosts

# The service's own secrets (EASGD_API_TOKEN...): a launcher may put the environment on a command
# line (Horovod does, over ssh). The attempt's own token is set after this filter.
_SECRET_ENV = re.compile(r"^EASGD_\w*TOKEN$")


class LaunchError(RuntimeError):
    """Nothing of the attempt could be started; the message is the job's one-line reason."""


@dataclass(frozen=True)
class Attempt:
    """One attempt of one job: the first, or a relaunch (`resume`) from the run's checkpoint."""

    job_id: int
    source: str
    config: ExperimentConfig
    allocation: Allocation
    log_path: Path
    run_dir: Path
    token: str
    resume: bool = False
    store_url: str | None = None

    @property
    def job_dir(self) -> Path:
        """The job's own directory, beside its log: a launcher may write its files there."""
        return self.log_path.parent

    @property
    def workdir(self) -> Path:
        """Where the ranks start: the job's copy of the user's working directory (or an empty
        one for an entrypoint that needs none), else the job's directory."""
        mine = self.config.code is not None or self.config.script is not None
        return self.job_dir / "code" if mine else self.job_dir


@dataclass
class Launched:
    """A started attempt, as its launcher finds it again. `pid`, `start_time` and `token` are
    what the store keeps, so an attempt adopted after a restart has them and no `process`."""

    job_id: int
    allocation: Allocation
    token: str | None
    pid: int | None
    start_time: float | None
    log_path: Path | None = None
    # The launcher's own live object (a Popen, a scheduler's job); None once adopted.
    process: Any = None
    # A batch scheduler's job, as the store keeps it ("slurm 123").
    scheduler_job: str | None = None

    @classmethod
    def of(
        cls,
        attempt: Attempt,
        pid: int | None,
        start_time: float | None,
        process: Any = None,
        scheduler_job: str | None = None,
    ) -> Launched:
        return cls(
            attempt.job_id,
            attempt.allocation,
            attempt.token,
            pid,
            start_time,
            attempt.log_path,
            process,
            scheduler_job,
        )


@dataclass(frozen=True)
class FirstFailure:
    """The rank that failed first, as the launcher saw it; its host when the launcher knows."""

    rank: int
    exit_code: int
    host: str | None


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed: the program's own one-line reason (or the launcher's, when the
    program said nothing), and the rank that failed first, from which the supervisor decides
    which host a relaunch leaves out."""

    reason: str | None = None
    first: FirstFailure | None = None
    # Where the attempt's ranks ran, when only the launcher knows (a scheduler placed them).
    hosts: Hosts | None = None


class Launcher(abc.ABC):
    """Starts, watches, signals and stops the ranks of one attempt of one job."""

    @abc.abstractmethod
    def start(self, attempt: Attempt) -> Launched:
        """Start the attempt's ranks, its output appended to `attempt.log_path`; raise
        LaunchError when nothing could be started. It may return before the ranks run (a
        scheduler queues them): the attempt counts as running, and holds its allocation, from
        here."""

    @abc.abstractmethod
    def alive(self, launched: Launched) -> bool:
        """Whether any part of the attempt still runs (or waits in a scheduler's queue)."""

    @abc.abstractmethod
    def exit_code(self, launched: Launched) -> int | None:
        """Once it is not alive: its exit status, 0 for success; None when it cannot be known
        (an attempt adopted after a restart, which the supervisor then judges by its run)."""

    @abc.abstractmethod
    def stop(self, launched: Launched, grace: float) -> int | None:
        """End the whole attempt: ask politely, wait `grace` seconds, then kill whatever is left,
        so that nothing of it outlives the call. Returns the status to report: the signal that
        ended it as a negative number (as Popen does), its own exit status if it had ended
        first, or None when nothing of it was found."""

    @abc.abstractmethod
    def signal_ranks(self, launched: Launched, signum: int) -> int:
        """Send `signum` to the attempt's training ranks only (never to the launcher's own
        processes, for which it may be fatal); how many ranks got it."""

    def signals_every_rank(self, launched: Launched) -> bool:
        """Whether `signal_ranks` reaches every rank: when not, the supervisor also leaves its
        request in the run directory, where rank 0 reads it."""
        return True

    @abc.abstractmethod
    def failure(self, launched: Launched) -> Failure:
        """Why the attempt failed, read from what it left (its log, a scheduler's record)."""

    def placement_problem(
        self,
        settings: ServiceSettings,
        workers: int,
        gpus_per_worker: int = 0,
        requested: Hosts | None = None,
        time_limit: int | None = None,
    ) -> str | None:
        """Why such a job can never be placed (asked before it is queued, and again before each
        placement), or None. This service's own hosts, slots and GPUs decide, unless the
        launcher's scheduler does; a time limit (minutes) is a scheduler's to enforce."""
        if time_limit is not None:
            return (
                "resources.time_limit_minutes: only a Slurm service ends an attempt at a time "
                f"limit; leave it out here (received: {time_limit})"
            )
        return placement.placement_problem(settings, workers, gpus_per_worker, requested)

    def allocate(
        self,
        settings: ServiceSettings,
        in_use: Iterable[Allocation],
        workers: int,
        gpus_per_worker: int = 0,
        requested: Hosts | None = None,
        exclude: Collection[str] = (),
    ) -> Allocation | None:
        """Where `workers` ranks go now, never on the hosts in `exclude`; None until they fit."""
        return placement.allocate(settings, in_use, workers, gpus_per_worker, requested, exclude)

    def scheduler_state(self, launched: Launched) -> str | None:
        """What a batch scheduler says of the attempt's job (its state, and why it waits), for
        the job's record; None when there is no scheduler."""
        return None

    def cancelled_outside(self, launched: Launched) -> str | None:
        """Why the ended attempt was cancelled by someone other than this service (a `scancel`
        by hand), or None: the job then ends cancelled, and is not relaunched."""
        return None

    def unreachable(self, hosts: Hosts) -> dict[str, str]:
        """The hosts among `hosts` that cannot take ranks now, each with why (a relaunch leaves
        them out)."""
        return {}

    def prepare(self, attempt: Attempt) -> None:
        """The working directory the ranks start in, made before they start (LaunchError if it
        cannot be)."""
        code = attempt.config.code
        try:
            if code is not None:
                workdir.copy_into(workdir.code_root(), code, attempt.workdir)
            else:
                attempt.workdir.mkdir(parents=True, exist_ok=True)
        except (workdir.WorkdirError, OSError) as exc:
            raise LaunchError(f"could not prepare the working directory: {exc}") from None

    def program(self, attempt: Attempt) -> list[str]:
        """What each rank runs: our training program, on the attempt's configuration (written
        beside the log, as the program reads a file) or, for a relaunch, on the run's last
        checkpoint; or the user's own entrypoint (its relaunch resumes through the tracking
        API, which the environment asks to)."""
        if attempt.config.script is not None:
            return attempt.config.script.argv(sys.executable)
        if attempt.resume:
            args = ["--resume", str(attempt.run_dir)]
        else:
            config_path = attempt.job_dir / "config.yaml"
            config_path.write_text(attempt.config.to_yaml())
            args = ["--config", str(config_path), "--out", str(attempt.run_dir)]
        return [sys.executable, "-m", "training", *args, "--source", attempt.source]

    def environment(self, attempt: Attempt) -> dict[str, str]:
        """What every rank of the attempt needs: the store, the job's id and this attempt's
        token (by which all of its processes are found again), without the service's own
        secrets."""
        env = {
            **{k: v for k, v in os.environ.items() if not _SECRET_ENV.match(k)},
            processes.JOB_ENV: str(attempt.job_id),
            processes.TOKEN_ENV: attempt.token,
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "EASGD_SOURCE": attempt.source,
        }
        if attempt.store_url:
            env["EASGD_DB_URL"] = attempt.store_url
        if attempt.config.code is not None:  # its modules import by name
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(attempt.workdir), env.get("PYTHONPATH")) if p
            )
        if attempt.config.script is not None:  # what training.tracking reads
            every = attempt.config.checkpoint.every
            env.update(
                EASGD_RUN_ID=attempt.run_dir.name,
                EASGD_RUN_SOURCE=attempt.source,
                EASGD_RESUME="1" if attempt.resume else "0",
                EASGD_CHECKPOINT_EVERY="none" if every is None else str(every),
                EASGD_CHECKPOINT_KEEP=str(attempt.config.checkpoint.keep),
            )
            if attempt.config.name:
                env["EASGD_RUN_NAME"] = attempt.config.name
        if attempt.allocation.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(attempt.allocation.gpus)
        return env
