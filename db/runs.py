"""Runs, their parameters, tags, metrics and events: what training writes and the UI reads.

Every public method validates its input, opens a managed session, changes or reads, and returns
plain objects (`db.entities`). Training opens this part alone; rank 0 is its only writer per run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from db.entities import EventRecord, LatestValue, MetricPoint, RunRecord, RunStatus, RunView
from db.errors import NotFound, StoreError
from db.models import LatestMetric, Metric, Param, Run, RunEvent, Tag
from db.search import search_statement, status_column
from db.sql import MAX_ID, SqlStore, check_key, check_run_id, check_source, is_row_id, record
from db.text import short


class RunStore(SqlStore):
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
        check_run_id(run_id)
        source = check_source(source, "run source")
        if not isinstance(workers, int) or workers < 1:
            raise StoreError(f"workers: a positive integer (received: {workers!r})")
        if job_id is not None and not (
            isinstance(job_id, int) and not isinstance(job_id, bool) and is_row_id(job_id)
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

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Add parameters to a run, as MLflow's `log_params`: a parameter says how the run was
        made, so logging one again with another value is refused, not overwritten."""
        if not isinstance(params, dict):
            raise StoreError(f"params: a mapping of key to value (received: {short(params)})")
        with self._write() as s:
            self._require_run(s, run_id)
            have = {
                p.key: p.value
                for p in s.scalars(
                    select(Param).where(Param.run_id == run_id, Param.key.in_(list(params)))
                )
            }
            for key, value in params.items():
                text_value = _param_text(value)[0]
                if key in have and have[key] != text_value:
                    raise StoreError(
                        f"param {key!r}: the run recorded {have[key]!r}; a run's parameters do "
                        f"not change (received: {short(value)})"
                    )
            self._put_params(s, run_id, {k: v for k, v in params.items() if k not in have})

    def _put_params(self, s: Session, run_id: str, params: dict[str, Any]) -> None:
        rows = []
        for key, value in params.items():
            check_key(key, "param key")
            text_value, num = _param_text(value)
            rows.append({"run_id": run_id, "key": key, "value": text_value, "value_num": num})
        s.execute(delete(Param).where(Param.run_id == run_id, Param.key.in_(list(params))))
        if rows:
            s.execute(insert(Param), rows)

    def _put_tags(self, s: Session, run_id: str, tags: dict[str, str]) -> None:
        for key in tags:
            check_key(key, "tag key")
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
        check_run_id(run_id)
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
                .where(Run.id == check_run_id(run_id), Run.status == RunStatus.RUNNING.value)
                .values(heartbeat_time=time.time())
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Rank 0 closes its run (cancelled: a tracked script stopped by a signal); a run the
        service closed already (cancelled, failed) stays so.

        One conditional UPDATE, not read-then-write: under PostgreSQL's READ COMMITTED the
        service's cancel may commit between a read and a write, and would be overwritten.
        """
        if status not in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED):
            raise StoreError(
                f"run status: finished, failed or cancelled (received: {short(status)})"
            )
        check_run_id(run_id)
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

    # ----------------------------------------------------------------- metrics and events
    def log_metrics(self, run_id: str, rows: Iterable[tuple[str, int, float, float | None]]) -> int:
        """Write a batch of (key, step, wall_time, value) in one transaction; returns the count."""
        check_run_id(run_id)
        batch = []
        summary: dict[str, list] = {}
        for key, step, wall_time, value in rows:
            check_key(key, "metric key")
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
        if self.engine.dialect.name not in ("sqlite", "postgresql"):  # pragma: no cover
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
        stmt = self._dialect_insert(LatestMetric).values(rows)
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
        check_key(kind, "event kind")
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
                stmt = stmt.where(LatestMetric.run_id.in_([check_run_id(r) for r in run_ids]))
            return list(s.scalars(stmt))

    def metric_history(self, run_id: str, key: str | None = None) -> list[MetricPoint]:
        with self._read() as s:
            self._require_run(s, run_id)
            stmt = select(Metric).where(Metric.run_id == run_id)
            if key is not None:
                stmt = stmt.where(Metric.key == check_key(key, "metric key"))
            rows = s.scalars(stmt.order_by(Metric.key, Metric.step)).all()
            return [MetricPoint(r.run_id, r.key, r.step, r.wall_time, r.value) for r in rows]

    def metric_histories(
        self, run_ids: Sequence[str], keys: Sequence[str], max_points: int = 1000
    ) -> dict[tuple[str, str], list[MetricPoint]]:
        """Histories of many runs, thinned on the server to at most about `max_points` per run and
        key (every k-th point, and always the last one)."""
        if not isinstance(max_points, int) or max_points < 2:
            raise StoreError(f"max_points: an integer >= 2 (received: {max_points!r})")
        runs = [check_run_id(r) for r in run_ids]
        keys = [check_key(k, "metric key") for k in keys]
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
    def get_run(self, run_id: str) -> RunRecord:
        with self._read() as s:
            self._require_run(s, run_id)
            return self._records(
                s, select(Run, status_column(self.lost_after)).where(Run.id == run_id)
            )[0]

    def _records(self, s: Session, stmt) -> list[RunRecord]:
        rows = s.execute(stmt).all()
        records = [record(RunRecord, r, status=status) for r, status in rows]
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
        ids = [check_run_id(r) for r in run_ids]
        if not ids:
            return {}
        with self._read() as s:
            stmt = select(Run, status_column(self.lost_after)).where(Run.id.in_(ids))
            return {r.id: r for r in self._records(s, stmt)}

    def list_runs(
        self, limit: int = 100, offset: int = 0, view: RunView | str = RunView.ACTIVE
    ) -> list[RunRecord]:
        return self.search_runs(None, limit=limit, offset=offset, view=view)

    def search_runs(
        self,
        filter: str | None = None,
        order_by: list[str] | str | None = None,
        limit: int = 100,
        offset: int = 0,
        view: RunView | str = RunView.ACTIVE,
    ) -> list[RunRecord]:
        """Runs matching an MLflow-style filter (see `db.query`), newest first by default;
        archived runs only when `view` asks for them."""
        if not isinstance(limit, int) or not 1 <= limit <= 100000:
            raise StoreError(f"limit: an integer from 1 to 100000 (received: {limit!r})")
        if not isinstance(offset, int) or offset < 0:
            raise StoreError(f"offset: an integer >= 0 (received: {offset!r})")
        stmt = search_statement(filter, order_by, self.lost_after, view)
        stmt = stmt.limit(limit).offset(offset)
        with self._read() as s:
            return self._records(s, stmt)


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
