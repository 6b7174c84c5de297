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
    config: str
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
