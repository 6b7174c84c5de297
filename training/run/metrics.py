"""Where rank 0's metrics go: one small interface, a JSON-lines file, and a fan-out to several.

The training loop talks only to `MetricsSink`; the SQL store plugs in beside the file.
Metric names are an interface shared with the store, the query language and the UI.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TRAIN_LOSS = "train_loss"
LEARNING_RATE = "learning_rate"
BYTES_SENT = "bytes_sent"
COMM_SECONDS = "comm_seconds"
STEP_TIME = "step_time"
# Seconds spent in training steps since the run began: start-up, evaluations, checkpoints and
# each launch's first step (which traces the step's graph) left out. "Training time" on Compare.
TRAIN_SECONDS = "train_seconds"
EPOCH = "epoch"
CENTER_LOSS = "center_loss"
CENTER_ACCURACY = "center_accuracy"
WORKER_LOSS = "worker_loss"
WORKER_ACCURACY = "worker_accuracy"
SPREAD = "spread"
# Algorithms with no center (cdsgd, cdmsgd): mean over workers of ||x_i - mean||^2.
CONSENSUS = "consensus"
# Asynchronous runs: center versions between a worker's read and its write (mean over every
# worker's exchanges since the last evaluation), and the seconds rank 0 waited for the center.
STALENESS = "staleness"
WAIT_SECONDS = "wait_seconds"
# Synchronous SGD with backup workers: gradients that came after their step was complete.
DROPPED = "dropped_gradients"
# The job's world size at each evaluation: it changes when a run resumes with other workers.
WORKERS = "workers"
# The curves a run's page draws, those the run has (the center server's only for its runs).
RUN_PAGE_CURVES = (CENTER_ACCURACY, TRAIN_LOSS, SPREAD, BYTES_SENT, STALENESS, DROPPED, WORKERS)
# What tables show first.
KEY_METRICS = (CENTER_ACCURACY, TRAIN_LOSS, BYTES_SENT)


@dataclass
class RunInfo:
    run_id: str
    run_dir: str
    name: str | None
    config: dict[str, Any]
    workers: int
    hosts: int
    source: str
    resumed_from_step: int | None = None
    total_steps: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # A tracked script's own parameters, recorded as given (a configuration's are derived).
    params: dict[str, Any] | None = None
    # The hosts' names, in rank order, where the program knows them.
    host_names: list[str] | None = None


class MetricsSink(Protocol):
    def start(self, info: RunInfo) -> None: ...

    def log(self, step: int, wall_time: float, values: dict[str, float]) -> None: ...

    def event(self, kind: str, message: str, step: int | None = None) -> None: ...

    def flush(self) -> None: ...

    def finish(self, status: str, error: str | None = None) -> None: ...


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()
    }


class JsonlSink:
    """metrics.jsonl and events.jsonl in the run directory; flushed every `flush_every` rows."""

    def __init__(self, run_dir: str | Path, flush_every: int = 50):
        self.dir = Path(run_dir)
        self.flush_every = flush_every
        self._pending = 0
        self._metrics = None
        self._events = None

    def start(self, info: RunInfo) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "metrics.jsonl"
        if info.resumed_from_step is not None:
            truncate_jsonl(path, info.resumed_from_step)
        self._metrics = path.open("a", encoding="utf-8")
        self._events = (self.dir / "events.jsonl").open("a", encoding="utf-8")

    def log(self, step: int, wall_time: float, values: dict[str, float]) -> None:
        row = {"step": step, "wall_time": round(wall_time, 6), **_clean(values)}
        self._metrics.write(json.dumps(row) + "\n")
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def event(self, kind: str, message: str, step: int | None = None) -> None:
        row = {"time": time.time(), "kind": kind, "step": step, "message": message}
        self._events.write(json.dumps(row) + "\n")
        self._events.flush()

    def flush(self) -> None:
        if self._metrics:
            self._metrics.flush()
        self._pending = 0

    def finish(self, status: str, error: str | None = None) -> None:
        for f in (self._metrics, self._events):
            if f:
                f.close()
        self._metrics = self._events = None


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop rows after `last_step` (a resumed run recomputes them), atomically."""
    if not path.exists():
        return
    kept = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a killed writer
            if row.get("step", 0) <= last_step:
                kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    tmp.replace(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


class FanOut:
    """Several sinks as one; a sink that fails is reported once and dropped, training goes on."""

    def __init__(self, sinks: list[MetricsSink], warn=print):
        self.sinks = list(sinks)
        self.warn = warn

    def _each(self, method: str, *args, **kwargs) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                if isinstance(sink, JsonlSink):
                    raise
                self.warn(
                    f"easgd: metrics sink {type(sink).__name__} failed in {method}: {exc}; "
                    "continuing with the JSON-lines file"
                )
                self.sinks.remove(sink)

    def start(self, info: RunInfo) -> None:
        self._each("start", info)

    def log(self, step: int, wall_time: float, values: dict[str, float]) -> None:
        self._each("log", step, wall_time, values)

    def event(self, kind: str, message: str, step: int | None = None) -> None:
        self._each("event", kind, message, step)

    def flush(self) -> None:
        self._each("flush")

    def finish(self, status: str, error: str | None = None) -> None:
        self._each("finish", status, error)
