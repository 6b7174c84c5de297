"""Rank 0's metrics into the run store: batched writes, events, a heartbeat while the run lives.

A writer that dies (rank 0 killed) stops the heartbeat, and the store shows its run as lost.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from db.errors import StoreNotInitialized
from db.runs import RunStore
from training.run.metrics import MetricsSink, RunInfo
from training.schema import recorded_params

HEARTBEAT_SECONDS = float(os.environ.get("EASGD_HEARTBEAT_SECONDS", "10"))


class StoreSink:
    def __init__(
        self,
        store: RunStore,
        batch_rows: int = 2000,
        batch_seconds: float = 2.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ):
        self.store = store
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.run_id: str | None = None
        self._rows: list[tuple[str, int, float, float | None]] = []
        self._last_flush = time.monotonic()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def start(self, info: RunInfo) -> None:
        self.run_id = info.run_id
        job = os.environ.get("EASGD_JOB_ID")
        if info.resumed_from_step is not None:
            try:
                self.store.resume_run(info.run_id, info.resumed_from_step, info.total_steps)
            except LookupError:
                self._create(info, job)
                self.store.log_metrics(info.run_id, _rows_from_file(info))
        else:
            self._create(info, job)
        self._beat = threading.Thread(target=self._heartbeat, name="easgd-heartbeat", daemon=True)
        self._beat.start()

    def _create(self, info: RunInfo, job: str | None) -> None:
        params = dict(info.params) if info.params is not None else recorded_params(info.config)
        params["workers"] = info.workers
        params["hosts"] = info.hosts
        if info.host_names:
            params["host_names"] = ",".join(info.host_names)
        self.store.create_run(
            info.run_id,
            params=params,
            name=info.name,
            source=info.source,
            run_dir=info.run_dir,
            workers=info.workers,
            hosts=info.hosts,
            job_id=int(job) if job and job.isdigit() else None,
            tags=info.tags,
            total_steps=info.total_steps,
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.store.heartbeat(self.run_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat must not stop training
                print(f"easgd: heartbeat to the run store failed: {exc}", file=sys.stderr)

    def log(self, step: int, wall_time: float, values: dict[str, float]) -> None:
        for key, value in values.items():
            self._rows.append((key, step, wall_time, value))
        if (
            len(self._rows) >= self.batch_rows
            or time.monotonic() - self._last_flush >= self.batch_seconds
        ):
            self.flush()

    def event(self, kind: str, message: str, step: int | None = None) -> None:
        self.store.add_event(self.run_id, kind, message, step)

    def flush(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self.store.log_metrics(self.run_id, rows)
        self._last_flush = time.monotonic()

    def finish(self, status: str, error: str | None = None) -> None:
        self._stop.set()
        try:
            self.flush()
        finally:
            self.store.finish_run(self.run_id, status, error)
            self.store.dispose()


def _rows_from_file(info: RunInfo):
    """A run resumed into a store that never saw it gets its history from metrics.jsonl."""
    from training.run.metrics import read_jsonl

    path = Path(info.run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for row in read_jsonl(path):
        step, wall = row.pop("step"), row.pop("wall_time")
        if step > (info.resumed_from_step or 0):
            continue
        rows += [(k, step, wall, v) for k, v in row.items() if isinstance(v, int | float | None)]
    return rows


def sinks_factory(db_url: str | None):
    """Called on rank 0 only, once the run directory exists. A store with no tables yet gets
    them (the first run in a fresh $EASGD_HOME is recorded, as the service's would be); one at
    another schema revision is never migrated from here."""

    def make(run_dir: Path) -> list[MetricsSink]:
        try:
            store = RunStore(db_url)
            store.ready()
        except (StoreNotInitialized, ValueError) as exc:
            print(
                f"easgd: warning: {exc}; this run is recorded in {run_dir} only",
                file=sys.stderr,
                flush=True,
            )
            return []
        return [StoreSink(store)]

    return make
