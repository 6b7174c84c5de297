"""The run store: the only place where SQL lives.

Every public method validates its input, opens a managed session, changes or reads, and returns
plain objects (`db.entities`). The same class serves the training ranks (rank 0 writes), the job
service and the UI, on SQLite (the default) or PostgreSQL.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from db import engine as engines
from db.entities import (
    EventRecord,
    JobRecord,
    JobStatus,
    LatestValue,
    LeaseRecord,
    MetricPoint,
    RunRecord,
    RunStatus,
)
from db.errors import EasgdError
from db.models import Job, LatestMetric, Metric, Param, Run, RunEvent, ServiceLease, Tag
from db.query import ATTRIBUTES, Comparison, Field, parse_filter, parse_order_by
from db.settings import db_url

LOST_AFTER_SECONDS = float(os.environ.get("EASGD_LOST_AFTER_SECONDS", "60"))
# Patterns as strings too: the REST API's document states them.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KEY_PATTERN = r"^[A-Za-z0-9_.\-/]{1,250}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_KEY = re.compile(KEY_PATTERN)
RUN_SOURCES = ("shell", "cli", "ui", "api", "bench")
SCHEDULER_LEASE = "scheduler"
MAX_ID = 2**63 - 1  # the largest SQL BIGINT: no row has a larger id
_CLOSED_BY_SERVICE = (RunStatus.FAILED, RunStatus.CANCELLED)
_ALLOWED = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED},
    JobStatus.RUNNING: {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED},
}


_AGGREGATE_COLUMN = {
    "latest": LatestMetric.value,
    "min": LatestMetric.min_value,
    "max": LatestMetric.max_value,
}


class StoreError(EasgdError, ValueError):
    """Bad input to the store: says what, what to do, and what was received."""

    http_status = 422


class NotFound(EasgdError, LookupError):
    http_status = 404


class StoreNotInitialized(EasgdError, RuntimeError):
    exit_code = 1
    http_status = 503


class InvalidTransition(EasgdError, RuntimeError):
    http_status = 409


class LeaseLost(EasgdError, RuntimeError):
    """The caller no longer holds the scheduler lease: another service may be scheduling."""

    exit_code = 1
    http_status = 409


class LeaseHeld(EasgdError, RuntimeError):
    """Another holder has the lease and it has not expired."""

    http_status = 409

    def __init__(self, lease: LeaseRecord):
        super().__init__(
            f"lease {lease.name!r} is held by {lease.holder} (pid {lease.pid} on "
            f"{lease.hostname}) until {lease.expires_at:.0f}"
        )
        self.lease = lease


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise StoreError(
            "run id: letters, digits, '.', '_' or '-', at most 64 characters "
            f"(received: {run_id!r})"
        )
    return run_id


def _check_key(key: str, what: str = "key") -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise StoreError(
            f"{what}: letters, digits, '_', '.', '-' or '/', 1 to 250 characters "
            f"(received: {key!r})"
        )
    return key


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        v = float(value)
        return v if math.isfinite(v) else None
    raise StoreError(f"metric value: a number or null (received: {value!r})")


def _param_text(value: Any) -> tuple[str | None, float | None]:
    if value is None:
        return None, None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int | float):
        v = float(value)
        return (str(value), v if math.isfinite(v) else None)
    if isinstance(value, list | dict):
        return json.dumps(value), None
    return str(value), None


class Store:
    def __init__(self, url: str | None = None, lost_after: float = LOST_AFTER_SECONDS):
        self.url = db_url(url)
        self.engine = engines.make_engine(self.url)
        self.lost_after = lost_after
        self._is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = self.engine.execution_options(easgd_write=True)

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- sessions and schema
    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as s, s.begin():
            yield s

    def init(self) -> str:
        """Apply migrations up to head (the CLI's `init` and the service; never training)."""
        engines.upgrade(self.engine)
        return engines.current_revision(self.engine) or ""

    def check(self) -> None:
        """Raise StoreNotInitialized unless the schema is at the code's head revision."""
        try:
            current = engines.current_revision(self.engine)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials...
            raise StoreNotInitialized(
                f"cannot open the run store at {self.display_url}: {exc}"
            ) from exc
        head = engines.head_revision()
        if current != head:
            state = f"is at schema revision {current}" if current else "has no tables yet"
            raise StoreNotInitialized(
                f"the run store at {self.display_url} {state} (this version needs {head}); "
                "run `easgd init` once"
            )

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    # ----------------------------------------------------------------- runs
    def create_run(
        self,
        run_id: str,
        *,
        params: dict[str, Any],
        name: str | None = None,
        source: str = "shell",
        run_dir: str | None = None,
        workers: int = 1,
        hosts: int = 1,
        job_id: int | None = None,
        total_steps: int | None = None,
        tags: dict[str, str] | None = None,
    ) -> RunRecord:
        _check_run_id(run_id)
        if source not in RUN_SOURCES:
            raise StoreError(f"run source: one of {', '.join(RUN_SOURCES)} (received: {source!r})")
        if not isinstance(workers, int) or workers < 1:
            raise StoreError(f"workers: a positive integer (received: {workers!r})")
        if job_id is not None and not (
            isinstance(job_id, int) and not isinstance(job_id, bool) and _is_row_id(job_id)
        ):
            raise StoreError(f"job id: an integer from 1 to {MAX_ID} (received: {job_id!r})")
        now = time.time()
        with self._write() as s:
            if s.get(Run, run_id) is not None:
                raise StoreError(f"run id: {run_id!r} exists already; choose another")
            s.add(
                Run(
                    id=run_id,
                    name=name,
                    status=RunStatus.RUNNING.value,
                    source=source,
                    run_dir=run_dir,
                    workers=workers,
                    hosts=hosts,
                    job_id=job_id,
                    start_time=now,
                    heartbeat_time=now,
                    last_step=0,
                    total_steps=total_steps,
                )
            )
            s.flush()
            self._put_params(s, run_id, params)
            self._put_tags(s, run_id, tags or {})
        return self.get_run(run_id)

    def _put_params(self, s: Session, run_id: str, params: dict[str, Any]) -> None:
        rows = []
        for key, value in params.items():
            _check_key(key, "param key")
            text_value, num = _param_text(value)
            rows.append({"run_id": run_id, "key": key, "value": text_value, "value_num": num})
        s.execute(delete(Param).where(Param.run_id == run_id, Param.key.in_(list(params))))
        if rows:
            s.execute(insert(Param), rows)

    def _put_tags(self, s: Session, run_id: str, tags: dict[str, str]) -> None:
        for key in tags:
            _check_key(key, "tag key")
        s.execute(delete(Tag).where(Tag.run_id == run_id, Tag.key.in_(list(tags))))
        if tags:
            s.execute(
                insert(Tag),
                [
                    {"run_id": run_id, "key": k, "value": None if v is None else str(v)}
                    for k, v in tags.items()
                ],
            )

    def _require_run(self, s: Session, run_id: str) -> Run:
        _check_run_id(run_id)
        run = s.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}; `easgd runs list` shows the runs there are")
        return run

    def resume_run(self, run_id: str, from_step: int, total_steps: int | None = None) -> None:
        """A run continues from a checkpoint: history after it is dropped, the summary rebuilt."""
        with self._write() as s:
            run = self._require_run(s, run_id)
            s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step > from_step))
            s.execute(delete(LatestMetric).where(LatestMetric.run_id == run_id))
            agg = s.execute(
                select(
                    Metric.key,
                    func.max(Metric.step),
                    func.min(Metric.value),
                    func.max(Metric.value),
                    func.count(),
                )
                .where(Metric.run_id == run_id)
                .group_by(Metric.key)
            ).all()
            for key, last, lo, hi, count in agg:
                point = s.execute(
                    select(Metric.value, Metric.wall_time).where(
                        Metric.run_id == run_id, Metric.key == key, Metric.step == last
                    )
                ).one()
                s.add(
                    LatestMetric(
                        run_id=run_id,
                        key=key,
                        step=last,
                        wall_time=point.wall_time,
                        value=point.value,
                        min_value=lo,
                        max_value=hi,
                        count=count,
                    )
                )
            now = time.time()
            run.status = RunStatus.RUNNING.value
            run.end_time = None
            run.error = None
            run.heartbeat_time = now
            run.last_step = from_step
            if total_steps is not None:
                run.total_steps = total_steps

    def heartbeat(self, run_id: str) -> None:
        """Only a running run beats: a late beat from a dying writer must not touch a closed one."""
        with self._write() as s:
            s.execute(
                update(Run)
                .where(Run.id == _check_run_id(run_id), Run.status == RunStatus.RUNNING.value)
                .values(heartbeat_time=time.time())
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Rank 0 closes its run; a run the service closed already (cancelled, failed) stays so.

        One conditional UPDATE, not read-then-write: under PostgreSQL's READ COMMITTED the
        service's cancel may commit between a read and a write, and would be overwritten.
        """
        if status not in (RunStatus.FINISHED, RunStatus.FAILED):
            raise StoreError(f"run status: finished or failed (received: {status!r})")
        _check_run_id(run_id)
        now = time.time()
        with self._write() as s:
            done = s.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == RunStatus.RUNNING.value)
                .values(
                    status=RunStatus(status).value, error=error, end_time=now, heartbeat_time=now
                )
            )
            if done.rowcount == 0:
                self._require_run(s, run_id)

    def delete_run(self, run_id: str) -> None:
        with self._write() as s:
            self._require_run(s, run_id)
            for model in (Metric, LatestMetric, Param, Tag, RunEvent):
                s.execute(delete(model).where(model.run_id == run_id))
            s.execute(delete(Run).where(Run.id == run_id))

    # ----------------------------------------------------------------- metrics and events
    def log_metrics(self, run_id: str, rows: Iterable[tuple[str, int, float, float | None]]) -> int:
        """Write a batch of (key, step, wall_time, value) in one transaction; returns the count."""
        _check_run_id(run_id)
        batch = []
        summary: dict[str, list] = {}
        for key, step, wall_time, value in rows:
            _check_key(key, "metric key")
            if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                raise StoreError(f"metric step: an integer >= 0 (received: {step!r})")
            v = _number(value)
            w = float(wall_time)
            batch.append({"run_id": run_id, "key": key, "step": step, "wall_time": w, "value": v})
            agg = summary.get(key)
            if agg is None:
                summary[key] = [step, w, v, v, v, 1]
            else:
                if step >= agg[0]:
                    agg[0], agg[1], agg[2] = step, w, v
                if v is not None:
                    agg[3] = v if agg[3] is None else min(agg[3], v)
                    agg[4] = v if agg[4] is None else max(agg[4], v)
                agg[5] += 1
        if not batch:
            return 0
        latest = [
            {
                "run_id": run_id,
                "key": k,
                "step": a[0],
                "wall_time": a[1],
                "value": a[2],
                "min_value": a[3],
                "max_value": a[4],
                "count": a[5],
            }
            for k, a in summary.items()
        ]
        with self._write() as s:
            s.execute(insert(Metric), batch)
            self._upsert_latest(s, latest)
            last_step = max(r["step"] for r in batch)
            running = Run.status == RunStatus.RUNNING.value
            s.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    heartbeat_time=case((running, time.time()), else_=Run.heartbeat_time),
                    last_step=case((Run.last_step < last_step, last_step), else_=Run.last_step),
                )
            )
        return len(batch)

    def _upsert_latest(self, s: Session, rows: list[dict[str, Any]]) -> None:
        name = self.engine.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # pragma: no cover - other databases take the portable path
            for row in rows:
                cur = s.get(LatestMetric, (row["run_id"], row["key"]))
                if cur is None:
                    s.add(LatestMetric(**row))
                    continue
                if row["step"] >= cur.step:
                    cur.step, cur.value, cur.wall_time = row["step"], row["value"], row["wall_time"]
                for attr, pick in (("min_value", min), ("max_value", max)):
                    vals = [v for v in (getattr(cur, attr), row[attr]) if v is not None]
                    setattr(cur, attr, pick(vals) if vals else None)
                cur.count += row["count"]
            return
        stmt = dialect_insert(LatestMetric).values(rows)
        ex = stmt.excluded
        newer = ex.step >= LatestMetric.step
        stmt = stmt.on_conflict_do_update(
            index_elements=[LatestMetric.run_id, LatestMetric.key],
            set_={
                "step": case((newer, ex.step), else_=LatestMetric.step),
                "wall_time": case((newer, ex.wall_time), else_=LatestMetric.wall_time),
                "value": case((newer, ex.value), else_=LatestMetric.value),
                "min_value": case(
                    (
                        or_(
                            LatestMetric.min_value.is_(None), ex.min_value < LatestMetric.min_value
                        ),
                        ex.min_value,
                    ),
                    else_=LatestMetric.min_value,
                ),
                "max_value": case(
                    (
                        or_(
                            LatestMetric.max_value.is_(None), ex.max_value > LatestMetric.max_value
                        ),
                        ex.max_value,
                    ),
                    else_=LatestMetric.max_value,
                ),
                "count": LatestMetric.count + ex.count,
            },
        )
        s.execute(stmt)

    def add_event(
        self, run_id: str, kind: str, message: str | None = None, step: int | None = None
    ) -> None:
        _check_key(kind, "event kind")
        with self._write() as s:
            self._require_run(s, run_id)
            s.add(RunEvent(run_id=run_id, time=time.time(), kind=kind, step=step, message=message))

    def events(self, run_id: str) -> list[EventRecord]:
        with self._read() as s:
            self._require_run(s, run_id)
            rows = s.scalars(
                select(RunEvent)
                .where(RunEvent.run_id == run_id)
                .order_by(RunEvent.time, RunEvent.id)
            ).all()
            return [EventRecord(r.run_id, r.time, r.kind, r.step, r.message) for r in rows]

    def metric_keys(self, run_ids: Sequence[str] | None = None) -> list[str]:
        with self._read() as s:
            stmt = select(LatestMetric.key).distinct().order_by(LatestMetric.key)
            if run_ids:
                stmt = stmt.where(LatestMetric.run_id.in_([_check_run_id(r) for r in run_ids]))
            return list(s.scalars(stmt))

    def metric_history(self, run_id: str, key: str | None = None) -> list[MetricPoint]:
        with self._read() as s:
            self._require_run(s, run_id)
            stmt = select(Metric).where(Metric.run_id == run_id)
            if key is not None:
                stmt = stmt.where(Metric.key == _check_key(key, "metric key"))
            rows = s.scalars(stmt.order_by(Metric.key, Metric.step)).all()
            return [MetricPoint(r.run_id, r.key, r.step, r.wall_time, r.value) for r in rows]

    def metric_histories(
        self, run_ids: Sequence[str], keys: Sequence[str], max_points: int = 1000
    ) -> dict[tuple[str, str], list[MetricPoint]]:
        """Histories of many runs, thinned on the server to at most about `max_points` per run and
        key (every k-th point, and always the last one)."""
        if not isinstance(max_points, int) or max_points < 2:
            raise StoreError(f"max_points: an integer >= 2 (received: {max_points!r})")
        runs = [_check_run_id(r) for r in run_ids]
        keys = [_check_key(k, "metric key") for k in keys]
        out: dict[tuple[str, str], list[MetricPoint]] = {(r, k): [] for r in runs for k in keys}
        if not runs or not keys:
            return out
        # Step space is cut into max_points - 1 buckets per run and key; each bucket gives its
        # first point (one index seek), and the last point is always kept. Sparse metrics
        # (evaluations) keep every point until they have more than the buckets.
        with self._read() as s:
            # One fetch of every row: row-by-row iteration costs a driver call per point.
            rows = s.execute(
                _DOWNSAMPLE, {"runs": runs, "keys": keys, "buckets": max_points - 1}
            ).all()
        for run_id, key, step, wall_time, value in rows:
            out[(run_id, key)].append(MetricPoint(run_id, key, step, wall_time, value))
        return out

    # ----------------------------------------------------------------- reading runs
    def _status_expr(self):
        cutoff = time.time() - self.lost_after
        beat = func.coalesce(Run.heartbeat_time, Run.start_time)
        return case(
            (
                and_(Run.status == RunStatus.RUNNING.value, beat < cutoff),
                literal(RunStatus.LOST.value),
            ),
            else_=Run.status,
        )

    def get_run(self, run_id: str) -> RunRecord:
        with self._read() as s:
            self._require_run(s, run_id)
            return self._records(s, select(Run, self._status_expr()).where(Run.id == run_id))[0]

    def _records(self, s: Session, stmt) -> list[RunRecord]:
        rows = s.execute(stmt).all()
        records = [
            RunRecord(
                id=r.id,
                name=r.name,
                status=status,
                source=r.source,
                run_dir=r.run_dir,
                workers=r.workers,
                hosts=r.hosts,
                job_id=r.job_id,
                start_time=r.start_time,
                end_time=r.end_time,
                heartbeat_time=r.heartbeat_time,
                last_step=r.last_step,
                total_steps=r.total_steps,
                error=r.error,
            )
            for r, status in rows
        ]
        by_id = {r.id: r for r in records}
        ids = list(by_id)
        if not ids:
            return records
        for p in s.scalars(select(Param).where(Param.run_id.in_(ids))):
            by_id[p.run_id].params[p.key] = p.value
        for t in s.scalars(select(Tag).where(Tag.run_id.in_(ids))):
            by_id[t.run_id].tags[t.key] = t.value
        for m in s.scalars(select(LatestMetric).where(LatestMetric.run_id.in_(ids))):
            by_id[m.run_id].metrics[m.key] = LatestValue(
                m.step, m.value, m.min_value, m.max_value, m.wall_time
            )
        return records

    def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunRecord]:
        """Several runs in one read (the ones that exist), for pages that refresh often."""
        ids = [_check_run_id(r) for r in run_ids]
        if not ids:
            return {}
        with self._read() as s:
            stmt = select(Run, self._status_expr()).where(Run.id.in_(ids))
            return {r.id: r for r in self._records(s, stmt)}

    def list_runs(self, limit: int = 100, offset: int = 0) -> list[RunRecord]:
        return self.search_runs(None, limit=limit, offset=offset)

    def search_runs(
        self,
        filter: str | None = None,
        order_by: list[str] | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Runs matching an MLflow-style filter (see `db.query`), newest first by default."""
        if not isinstance(limit, int) or not 1 <= limit <= 100000:
            raise StoreError(f"limit: an integer from 1 to 100000 (received: {limit!r})")
        if not isinstance(offset, int) or offset < 0:
            raise StoreError(f"offset: an integer >= 0 (received: {offset!r})")
        comparisons = parse_filter(filter)
        orders = parse_order_by(order_by)
        status = self._status_expr()
        stmt = select(Run, status)
        for c in comparisons:
            stmt = stmt.where(self._condition(c, status))
        for o in orders:
            for col in self._sort_columns(o.field, status):
                stmt = stmt.order_by(
                    col.desc().nulls_last() if o.descending else col.asc().nulls_last()
                )
        stmt = stmt.order_by(Run.start_time.desc(), Run.id).limit(limit).offset(offset)
        with self._read() as s:
            return self._records(s, stmt)

    def _attribute_column(self, name: str, status):
        if name == "status":
            return status
        if name == "run_id":
            return Run.id
        if name == "duration":
            return func.coalesce(Run.end_time, Run.heartbeat_time) - Run.start_time
        return getattr(Run, name)

    def _sort_columns(self, f: Field, status) -> list:
        if f.kind == "attribute":
            return [self._attribute_column(f.key, status)]
        if f.kind == "metric":
            col = _AGGREGATE_COLUMN[f.aggregate]
            return [
                select(col)
                .where(LatestMetric.run_id == Run.id, LatestMetric.key == f.key)
                .scalar_subquery()
            ]
        if f.kind == "param":
            # Numbers in numeric order, then text in text order.
            return [
                select(col).where(Param.run_id == Run.id, Param.key == f.key).scalar_subquery()
                for col in (Param.value_num, Param.value)
            ]
        return [select(Tag.value).where(Tag.run_id == Run.id, Tag.key == f.key).scalar_subquery()]

    def _condition(self, c: Comparison, status):
        f, op, value = c.field, c.op, c.value
        values = value if isinstance(value, tuple) else (value,)
        numeric = all(isinstance(v, float) for v in values)
        if f.kind == "attribute":
            kind = ATTRIBUTES[f.key]
            col = self._attribute_column(f.key, status)
            if kind == "num":
                values = tuple(self._as_number(f.key, v) for v in values)
                value = values if isinstance(value, tuple) else values[0]
                if op in ("LIKE", "ILIKE"):
                    raise StoreError(f"filter: {f.key} is a number; LIKE needs a text field")
            elif numeric:
                raise StoreError(
                    f"filter: {f.key} is text; quote the value (received: {values[0]:g})"
                )
            return _compare(col, op, value)
        if f.kind == "metric":
            if not numeric:
                raise StoreError(f"filter: {f} compares with numbers (received: {values[0]!r})")
            col = _AGGREGATE_COLUMN[f.aggregate]
            return exists().where(
                LatestMetric.run_id == Run.id, LatestMetric.key == f.key, _compare(col, op, value)
            )
        if f.kind == "param":
            col = Param.value_num if numeric and op not in ("LIKE", "ILIKE") else Param.value
            if col is Param.value:
                value = (
                    tuple(_text_literal(v) for v in values)
                    if isinstance(value, tuple)
                    else _text_literal(value)
                )
            return exists().where(
                Param.run_id == Run.id, Param.key == f.key, _compare(col, op, value)
            )
        value = (
            tuple(_text_literal(v) for v in values)
            if isinstance(value, tuple)
            else _text_literal(value)
        )
        return exists().where(
            Tag.run_id == Run.id, Tag.key == f.key, _compare(Tag.value, op, value)
        )

    @staticmethod
    def _as_number(name: str, v: str | float) -> float:
        if isinstance(v, float):
            return v
        if name in ("start_time", "end_time"):
            try:
                return datetime.fromisoformat(v).timestamp()
            except ValueError:
                pass
        raise StoreError(
            f"filter: {name} compares with a number"
            + (" or an ISO date such as '2026-11-01'" if name.endswith("time") else "")
            + f" (received: {v!r})"
        )

    # ----------------------------------------------------------------- jobs
    def create_job(
        self,
        *,
        config: dict[str, Any],
        workers: int,
        hosts: str | None = None,
        gpus: str | None = None,
        name: str | None = None,
        priority: int = 0,
        source: str = "api",
    ) -> JobRecord:
        if not isinstance(workers, int) or workers < 1:
            raise StoreError(f"workers: a positive integer (received: {workers!r})")
        if source not in RUN_SOURCES:
            raise StoreError(f"job source: one of {', '.join(RUN_SOURCES)} (received: {source!r})")
        with self._write() as s:
            job = Job(
                name=name,
                status=JobStatus.QUEUED.value,
                priority=priority,
                source=source,
                config=json.dumps(config, sort_keys=True),
                workers=workers,
                hosts=hosts,
                gpus=gpus,
                cancel_requested=False,
                created_at=time.time(),
            )
            s.add(job)
            s.flush()
            return _job_record(job)

    def get_job(self, job_id: int) -> JobRecord:
        with self._read() as s:
            return _job_record(self._require_job(s, job_id))

    def _require_job(self, s: Session, job_id: int, lock: bool = False) -> Job:
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            raise StoreError(f"job id: an integer (received: {job_id!r})")
        job = None
        if _is_row_id(job_id):  # no row has another id, and SQL integers cannot carry larger
            stmt = select(Job).where(Job.id == job_id)
            if lock and not self._is_sqlite:
                stmt = stmt.with_for_update()
            job = s.scalars(stmt).first()
        if job is None:
            raise NotFound(f"no job {job_id}; `easgd jobs list` shows the jobs there are")
        return job

    def list_jobs(
        self, status: Sequence[str] | str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        wanted = [status] if isinstance(status, str) else list(status or [])
        for w in wanted:
            if w not in JobStatus.__members__.values():
                raise StoreError(
                    f"job status: one of {', '.join(j.value for j in JobStatus)} (received: {w!r})"
                )
        stmt = select(Job)
        if wanted:
            stmt = stmt.where(Job.status.in_(wanted))
        with self._read() as s:
            rows = s.scalars(stmt.order_by(Job.id.desc()).limit(limit)).all()
            return [_job_record(j) for j in rows]

    def queued_jobs(self) -> list[JobRecord]:
        """Queued jobs in the order the scheduler serves them: priority, then age."""
        with self._read() as s:
            rows = s.scalars(
                select(Job)
                .where(Job.status == JobStatus.QUEUED.value)
                .order_by(Job.priority.desc(), Job.created_at, Job.id)
            ).all()
            return [_job_record(j) for j in rows]

    def transition_job(
        self,
        job_id: int,
        to: JobStatus | str,
        *,
        expected: JobStatus | str | None = None,
        lease_token: str | None = None,
        run_status: RunStatus | None = None,
        run_error: str | None = None,
        **fields: Any,
    ) -> JobRecord:
        """The one way a job's status changes; a terminal status is never left.

        A job asked to cancel is never claimed (queued -> running), and with `expected` the change
        applies only from that status: a cancel and a launch racing each other, in one service
        or two, cannot leave a job marked cancelled while it runs. With `lease_token` the change
        is refused (LeaseLost) unless that token holds the unexpired scheduler lease, checked in
        the same transaction, so a service that lost the lease launches nothing more.

        With `run_status`, the job's run (if it exists and is still running) is closed in the
        same transaction, so no reader sees a cancelled job beside a running run.
        """
        to = JobStatus(to)
        expected = None if expected is None else JobStatus(expected)
        if run_status is not None and RunStatus(run_status) not in _CLOSED_BY_SERVICE:
            raise StoreError(
                "run status: the service closes a run as "
                f"{' or '.join(r.value for r in _CLOSED_BY_SERVICE)} (received: {run_status!r})"
            )
        with self._write() as s:
            if lease_token is not None:
                self._require_lease(s, lease_token)
            job = self._require_job(s, job_id, lock=True)
            current = JobStatus(job.status)
            if current.is_terminal():
                raise InvalidTransition(
                    f"job {job_id} is {current.value} (terminal); it cannot become {to.value}"
                )
            if expected is not None and current is not expected:
                raise InvalidTransition(
                    f"job {job_id} is {current.value}, not {expected.value}; "
                    f"it did not become {to.value}"
                )
            if to not in _ALLOWED[current]:
                raise InvalidTransition(
                    f"job {job_id}: {current.value} -> {to.value} is not a valid transition"
                )
            if to is JobStatus.RUNNING and job.cancel_requested:
                raise InvalidTransition(
                    f"job {job_id} was asked to cancel before it started; it is not launched"
                )
            job.status = to.value
            now = time.time()
            if to is JobStatus.RUNNING:
                job.started_at = now
            if to.is_terminal():
                job.ended_at = now
            self._set_job_fields(job, fields)
            if run_status is not None and job.run_id:
                s.execute(
                    update(Run)
                    .where(Run.id == job.run_id, Run.status == RunStatus.RUNNING.value)
                    .values(status=RunStatus(run_status).value, error=run_error, end_time=now)
                )
            return _job_record(job)

    def update_job(self, job_id: int, **fields: Any) -> JobRecord:
        """Process information, run links and messages; never the status."""
        with self._write() as s:
            job = self._require_job(s, job_id, lock=True)
            self._set_job_fields(job, fields)
            return _job_record(job)

    _JOB_FIELDS = {
        "pid",
        "pid_start_time",
        "launch_token",
        "exit_code",
        "message",
        "log_path",
        "run_id",
        "run_dir",
        "cancel_requested",
        "gpus",
        "hosts",
    }

    def _set_job_fields(self, job: Job, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key not in self._JOB_FIELDS:
                raise StoreError(
                    f"job field: one of {', '.join(sorted(self._JOB_FIELDS))} (received: {key!r})"
                )
            setattr(job, key, value)

    def job_for_run(self, run_id: str) -> JobRecord | None:
        with self._read() as s:
            job = s.scalars(select(Job).where(Job.run_id == _check_run_id(run_id))).first()
            return _job_record(job) if job else None

    # ----------------------------------------------------------------- the scheduler's lease
    def get_lease(self, name: str = SCHEDULER_LEASE) -> LeaseRecord | None:
        with self._read() as s:
            row = s.get(ServiceLease, name)
            return _lease_record(row) if row else None

    def take_lease(
        self,
        *,
        holder: str,
        token: str,
        pid: int,
        hostname: str,
        ttl: float,
        pid_start_time: float | None = None,
        name: str = SCHEDULER_LEASE,
        now: float | None = None,
        holder_gone: Callable[[LeaseRecord], bool] | None = None,
    ) -> LeaseRecord:
        """Take the lease, or renew it if it is ours; raise LeaseHeld while another holds it.

        It is free when it has no row, has expired, or `holder_gone` says its holder is dead.
        One write transaction (SQLite's BEGIN IMMEDIATE, PostgreSQL's row lock), so two takers
        never both win.
        """
        now = time.time() if now is None else now
        values = {
            "holder": holder,
            "token": token,
            "pid": pid,
            "pid_start_time": pid_start_time,
            "hostname": hostname,
            "acquired_at": now,
            "expires_at": now + ttl,
        }
        with self._write() as s:
            s.execute(
                self._insert(ServiceLease).values(name=name, **values).on_conflict_do_nothing()
            )
            stmt = select(ServiceLease).where(ServiceLease.name == name)
            if not self._is_sqlite:
                stmt = stmt.with_for_update()
            row = s.scalars(stmt).one()
            if row.token == token:
                row.expires_at = now + ttl
            elif row.expires_at <= now or (holder_gone and holder_gone(_lease_record(row))):
                for key, value in values.items():
                    setattr(row, key, value)
            else:
                raise LeaseHeld(_lease_record(row))
            return _lease_record(row)

    def _require_lease(self, s: Session, token: str, name: str = SCHEDULER_LEASE) -> None:
        # A shared row lock on PostgreSQL: take_lease's FOR UPDATE waits for this transaction.
        stmt = select(ServiceLease).where(ServiceLease.name == name)
        if not self._is_sqlite:
            stmt = stmt.with_for_update(read=True)
        row = s.scalars(stmt).first()
        if row is None or row.token != token or row.expires_at <= time.time():
            raise LeaseLost(
                "this service no longer holds the store's scheduler lease"
                + (f"; {row.holder} (pid {row.pid} on {row.hostname}) does" if row else "")
            )

    def renew_lease(
        self, token: str, ttl: float, name: str = SCHEDULER_LEASE, now: float | None = None
    ) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and was taken)."""
        now = time.time() if now is None else now
        with self._write() as s:
            done = s.execute(
                update(ServiceLease)
                .where(ServiceLease.name == name, ServiceLease.token == token)
                .values(expires_at=now + ttl)
            )
            return done.rowcount == 1

    def release_lease(self, token: str, name: str = SCHEDULER_LEASE) -> None:
        with self._write() as s:
            s.execute(
                delete(ServiceLease).where(ServiceLease.name == name, ServiceLease.token == token)
            )

    def _insert(self, model):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(model)


def _is_row_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


def _lease_record(row: ServiceLease) -> LeaseRecord:
    return LeaseRecord(
        name=row.name,
        holder=row.holder,
        token=row.token,
        pid=row.pid,
        pid_start_time=row.pid_start_time,
        hostname=row.hostname,
        acquired_at=row.acquired_at,
        expires_at=row.expires_at,
    )


_DOWNSAMPLE = text("""
WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i + 1 < :buckets),
rk AS (SELECT run_id, key, step / :buckets + 1 AS width, step AS last FROM latest_metrics
       WHERE run_id IN :runs AND key IN :keys),
firsts AS (
  SELECT rk.run_id, rk.key,
         (SELECT MIN(m.step) FROM metrics m WHERE m.run_id = rk.run_id AND m.key = rk.key
            AND m.step >= b.i * rk.width AND m.step < (b.i + 1) * rk.width) AS step
  FROM rk, b WHERE b.i * rk.width <= rk.last
  UNION SELECT run_id, key, last FROM rk)
SELECT m.run_id, m.key, m.step, m.wall_time, m.value
FROM firsts f JOIN metrics m ON m.run_id = f.run_id AND m.key = f.key AND m.step = f.step
ORDER BY m.run_id, m.key, m.step
""").bindparams(bindparam("runs", expanding=True), bindparam("keys", expanding=True))


def _job_record(j: Job) -> JobRecord:
    return JobRecord(
        id=j.id,
        name=j.name,
        status=JobStatus(j.status),
        priority=j.priority,
        source=j.source,
        config=j.config,
        workers=j.workers,
        hosts=j.hosts,
        gpus=j.gpus,
        run_id=j.run_id,
        run_dir=j.run_dir,
        log_path=j.log_path,
        pid=j.pid,
        pid_start_time=j.pid_start_time,
        launch_token=j.launch_token,
        exit_code=j.exit_code,
        message=j.message,
        cancel_requested=bool(j.cancel_requested),
        created_at=j.created_at,
        started_at=j.started_at,
        ended_at=j.ended_at,
    )


def _text_literal(v: str | float) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return v


def _compare(col, op: str, value):
    if op == "=":
        return col == value
    if op == "!=":
        return col != value
    if op == "<":
        return col < value
    if op == "<=":
        return col <= value
    if op == ">":
        return col > value
    if op == ">=":
        return col >= value
    if op == "LIKE":
        return col.like(value)
    if op == "ILIKE":
        return col.ilike(value)
    if op == "IN":
        return col.in_(list(value))
    if op == "NOT IN":
        return col.not_in(list(value))
    raise StoreError(f"filter: unknown operator {op!r}")  # pragma: no cover - parser guards
