"""Plain objects the store returns: no session, no lazy loading, safe to pass anywhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class RunSource(StrEnum):
    """Where a run or job was started: a shell's horovodrun, or one of the product's doors."""

    SHELL = "shell"
    CLI = "cli"
    UI = "ui"
    API = "api"
    BENCH = "bench"


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # derived: running, but its writer's heartbeat stopped


class RunView(StrEnum):
    """Which runs a search sees, as MLflow's `run_view_type`: archived runs are kept but hidden
    unless asked for."""

    ACTIVE = "active"
    ARCHIVED = "archived"
    ALL = "all"


@dataclass
class LatestValue:
    step: int
    value: float | None
    min: float | None
    max: float | None
    wall_time: float


@dataclass
class RunRecord:
    id: str
    name: str | None
    status: str
    source: str
    run_dir: str | None
    workers: int
    hosts: int
    job_id: int | None
    start_time: float
    end_time: float | None
    heartbeat_time: float | None
    last_step: int
    total_steps: int | None
    error: str | None
    archived_at: float | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    tags: dict[str, str | None] = field(default_factory=dict)
    metrics: dict[str, LatestValue] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        end = self.end_time or self.heartbeat_time
        return None if end is None else max(0.0, end - self.start_time)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration"] = self.duration
        return d


@dataclass
class MetricPoint:
    run_id: str
    key: str
    step: int
    wall_time: float
    value: float | None


@dataclass
class EventRecord:
    run_id: str
    time: float
    kind: str
    step: int | None
    message: str | None


@dataclass
class JobRecord:
    id: int
    name: str | None
    status: JobStatus
    priority: int
    source: str
    config: dict[str, Any]
    workers: int
    hosts: str | None
    gpus: str | None
    run_id: str | None
    run_dir: str | None
    log_path: str | None
    pid: int | None
    pid_start_time: float | None
    launch_token: str | None
    exit_code: int | None
    message: str | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    ended_at: float | None
    scheduler_job: str | None = None
    scheduler_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass
class LeaseRecord:
    """Who schedules jobs from a store: one service at a time, until its lease expires."""

    name: str
    holder: str
    token: str
    pid: int
    pid_start_time: float | None
    hostname: str
    acquired_at: float
    expires_at: float


class SweepStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"  # every trial ended, or the search space is spent
    STOPPED = "stopped"  # on request
    FAILED = "failed"  # the search itself could not go on

    def is_terminal(self) -> bool:
        return self is not SweepStatus.RUNNING


class TrialState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED_EARLY = "stopped_early"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self not in (TrialState.QUEUED, TrialState.RUNNING)


@dataclass
class TrialRecord:
    id: int
    sweep_id: int
    number: int
    state: TrialState
    params: dict[str, Any]
    job_id: int | None
    run_id: str | None
    value: float | None
    optuna_number: int | None
    message: str | None
    created_at: float
    ended_at: float | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d


@dataclass
class SweepRecord:
    id: int
    name: str | None
    status: SweepStatus
    method: str
    metric: str
    goal: str
    seed: int
    run_cap: int
    concurrency: int
    source: str
    spec: dict[str, Any]
    base_config: dict[str, Any]
    stop_requested: bool
    message: str | None
    created_at: float
    ended_at: float | None
    trials: list[TrialRecord] = field(default_factory=list)

    def best_trial(self) -> TrialRecord | None:
        """The succeeded trial with the best final metric: a trial stopped early is not a
        candidate, whatever its last value."""
        done = [t for t in self.trials if t.state is TrialState.SUCCEEDED and t.value is not None]
        if not done:
            return None
        sign = -1 if self.goal == "maximize" else 1
        return min(done, key=lambda t: (sign * t.value, t.number))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["trials"] = [t.to_dict() for t in self.trials]
        best = self.best_trial()
        d["best_trial"] = None if best is None else best.number
        return d
