"""One tracked run: rank 0 writes it to the store and to its run directory; other ranks no-op.

It reuses what `python -m training` records with: the JSON-lines files in the run directory,
and the store sink with its heartbeat (a writer killed outright shows as lost, not running).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from numbers import Real
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from db.entities import RunSource, RunStatus
from db.errors import EasgdError, StoreError, StoreNotInitialized
from db.settings import runs_dir
from db.sql import check_key
from training.run import checkpoint
from training.run.console import say
from training.run.metrics import FanOut, JsonlSink, MetricsSink, RunInfo
from training.run.program import env_rank
from training.run.run_dir import new_run_id
from training.run.store_sink import StoreSink

_active: Run | None = None
_STOPPING = (signal.SIGTERM, signal.SIGINT)
_stopped: list[str] = []  # the signal that stopped this process, once one has


class TrackingError(EasgdError, ValueError):
    """A call the tracking API refuses: what is wrong, what to do, what was received."""


class Stopped(KeyboardInterrupt):
    """SIGTERM (what horovodrun and the job service send to stop ranks) as an exception, so that
    the run is closed as cancelled on the way out."""


def active_run() -> Run | None:
    return _active if _active is not None and _active.open else None


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _open_store(db_url: str | None):
    """The store every entry point uses; a fresh SQLite file or empty database gets its tables
    (as `easgd up` would), one at another schema revision is left alone and said so."""
    from db.store import Store

    try:
        store = Store(db_url)
        store.ready()
        return store
    except (StoreNotInitialized, StoreError, ValueError) as exc:
        reason = str(exc)
    reason = reason.strip().splitlines()[0] if reason.strip() else "the store did not answer"
    say(f"easgd: warning: {reason}; this run is recorded in its run directory only")
    return None


def start_run(
    name: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    *,
    run_id: str | None = None,
    db_url: str | None = None,
    resume: bool | None = None,
) -> Run:
    """Open a run (on rank 0; a silent one elsewhere), usable as a context manager.

    `resume` continues the run `run_id` names from its last complete checkpoint (history after
    it is dropped, as `python -m training --resume` does); by default it is what the job service
    asks of a relaunched job (`EASGD_RESUME=1`), else a run id that holds a run is refused."""
    global _active
    if active_run() is not None:
        raise TrackingError(
            f"run {_active.run_id!r} is still open: end it (run.end(), or leave its `with` "
            "block) before starting another"
        )
    if name is None:
        name = os.environ.get("EASGD_RUN_NAME") or None  # a job's name, from the service
    if name is not None and not isinstance(name, str):
        raise TrackingError(f"name: a string (received: {name!r})")
    for what, given in (("params", params), ("tags", tags)):
        if given is not None and not isinstance(given, dict):
            raise TrackingError(f"{what}: a dict (received: {type(given).__name__})")
    run_id = run_id or os.environ.get("EASGD_RUN_ID") or new_run_id()
    rank = env_rank()
    if resume is None:
        resume = os.environ.get("EASGD_RESUME") == "1"
    run = Run(run_id, rank)
    if rank == 0:
        run._open(name, dict(params or {}), dict(tags or {}), db_url, bool(resume))
    _active = run
    _stopped.clear()
    return run


class Run:
    """Rank 0's handle writes; every other rank's accepts the same calls and records nothing."""

    def __init__(self, run_id: str, rank: int):
        self.run_id = run_id
        self.rank = rank
        self.run_dir = runs_dir() / run_id
        self.open = True
        self.step = -1  # the last step logged
        self._sink: FanOut | None = None
        self._start = time.perf_counter()
        self._previous: dict[int, Any] = {}
        # Rank 0: the checkpoint this run continues from, (its directory, its meta.json).
        self.resumed: tuple[Path, dict[str, Any]] | None = None

    @property
    def recording(self) -> bool:
        return self.rank == 0

    @property
    def elapsed(self) -> float:
        """Seconds since the run started, its time before a resume included."""
        return time.perf_counter() - self._start

    def _open(self, name, params, tags, db_url, resume: bool) -> None:
        self._check_keys(params, "param")
        self._check_keys(tags, "tag")
        resumed_from = None
        if (self.run_dir / "metrics.jsonl").exists():
            if not resume:
                raise TrackingError(
                    f"run id {self.run_id!r}: {self.run_dir} already holds a run; choose "
                    f"another run_id, or continue it with resume=True (received: {self.run_id!r})"
                )
            self.resumed = checkpoint.latest(self.run_dir)
            resumed_from = int(self.resumed[1]["step"]) if self.resumed else 0
            if self.resumed:
                self._start -= float(self.resumed[1].get("wall_time", 0.0))
        sinks: list[MetricsSink] = [JsonlSink(self.run_dir)]
        store = _open_store(db_url)
        if store is not None:
            sinks.append(StoreSink(store))
        self._sink = FanOut(sinks)
        source = os.environ.get("EASGD_RUN_SOURCE", RunSource.SHELL.value)
        info = RunInfo(
            run_id=self.run_id,
            run_dir=str(self.run_dir),
            name=name,
            config={},
            workers=_env_int("HOROVOD_SIZE", 1),
            hosts=_env_int("HOROVOD_CROSS_SIZE", 1),
            source=source if source in RunSource.__members__.values() else RunSource.SHELL,
            tags={k: str(v) for k, v in tags.items()},
            params=params,
            resumed_from_step=resumed_from,
        )
        self._sink.start(info)
        if resumed_from is None:
            self._sink.event("started", f"started: {info.workers} workers")
        else:
            self.step = resumed_from
            where = f"its checkpoint at step {resumed_from}" if self.resumed else "the start"
            self._sink.event(
                "resumed", f"resumed from {where} with {info.workers} workers", resumed_from
            )
        if threading.current_thread() is threading.main_thread():
            for signum in _STOPPING:
                self._previous[signum] = signal.signal(signum, _stop)
        atexit.register(_close_at_exit, self)
        say(f"easgd: tracking run {self.run_id} in {self.run_dir}")

    @staticmethod
    def _check_keys(values: dict[str, Any], what: str) -> None:
        for key in values:
            try:
                check_key(key, f"{what} key")
            except StoreError as exc:
                raise TrackingError(str(exc)) from None

    def _require_open(self) -> None:
        if not self.open:
            raise TrackingError(f"run {self.run_id!r} has ended; start another with start_run()")

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Values at one step (the last step + 1 when not given); NaN and infinities are kept as
        missing values, as the training program keeps them."""
        self._require_open()
        if not isinstance(values, dict):
            raise TrackingError(f"metrics: a dict of name to number (received: {values!r:.80})")
        if step is None:
            step = self.step + 1
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**53:
            raise TrackingError(f"step: an integer from 0 to 2**53 (received: {step!r:.80})")
        clean: dict[str, float] = {}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, Real):
                raise TrackingError(
                    f"metric {key!r}: a number (received: {type(value).__name__} {value!r:.80})"
                )
            clean[key] = float(value)
        self._check_keys(clean, "metric")
        self.step = max(self.step, step)
        if self._sink is not None and clean:
            self._sink.log(step, time.perf_counter() - self._start, clean)

    def log_params(self, params: dict[str, Any]) -> None:
        """Parameters once; logging one again with another value is refused."""
        self._require_open()
        if not isinstance(params, dict):
            raise TrackingError(f"params: a dict (received: {type(params).__name__})")
        self._check_keys(params, "param")
        self._in_store("log_params", params)

    def set_tags(self, tags: dict[str, str | None]) -> None:
        """Set each tag, or remove it where the value is None."""
        self._require_open()
        if not isinstance(tags, dict):
            raise TrackingError(f"tags: a dict (received: {type(tags).__name__})")
        self._in_store("set_tags", tags)

    def _in_store(self, method: str, values: dict[str, Any]) -> None:
        """A store refusal is the caller's error; a store that stopped answering is a warning
        (the run goes on in its run directory, as the metrics do)."""
        # The store of the sink still writing (FanOut drops one that failed).
        store = next(
            (k.store for k in getattr(self._sink, "sinks", ()) if isinstance(k, StoreSink)), None
        )
        if store is None:
            return
        try:
            getattr(store, method)(self.run_id, values)
        except StoreError as exc:
            raise TrackingError(str(exc)) from None
        except SQLAlchemyError as exc:
            say(f"easgd: warning: {method} did not reach the store ({type(exc).__name__})")

    def event(self, kind: str, message: str, step: int | None = None) -> None:
        """A line in the run's history (the Run page's events)."""
        if self._sink is not None and self.open:
            self._sink.event(kind, message, step)

    def end(self, status: str = RunStatus.FINISHED, error: str | None = None) -> None:
        """Close the run; later calls do nothing."""
        if not self.open:
            return
        if status not in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED):
            raise TrackingError(f"status: finished, failed or cancelled (received: {status!r:.80})")
        self.open = False
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)  # not half-closed
        try:
            if self._sink is not None:
                step = max(self.step, 0)
                if status == RunStatus.FINISHED:
                    self._sink.event("finished", f"finished at step {step}", step)
                else:
                    self._sink.event(RunStatus(status).value, error or "", step)
                self._sink.finish(RunStatus(status), error)
                say(f"easgd: run {self.run_id} {RunStatus(status).value}, in {self.run_dir}")
        finally:
            if threading.current_thread() is threading.main_thread():
                for signum, handler in self._previous.items():
                    signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        self.end(*_outcome(exc))
        return False


def _outcome(exc: BaseException | None) -> tuple[str, str | None]:
    if _stopped:  # whatever the signal's arrival broke first (a collective, say)
        return RunStatus.CANCELLED, f"stopped by {_stopped[0]}"
    if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
        return RunStatus.FINISHED, None
    if isinstance(exc, KeyboardInterrupt):
        return RunStatus.CANCELLED, str(exc) or "interrupted"
    return RunStatus.FAILED, f"{type(exc).__name__}: {exc}"


def _stop(signum, frame) -> None:
    _stopped.append(signal.Signals(signum).name)
    raise Stopped(f"stopped by {signal.Signals(signum).name}")


def _close_at_exit(run: Run) -> None:
    """A run the script never ended: failed if the interpreter is leaving on an error."""
    if run.open:
        run.end(*_outcome(getattr(sys, "last_value", None)))
