"""The SQL of a run search: `db.query`'s parsed filter and ordering, turned into clauses.

Values reach the database only as bound parameters. A run's status is a computed column (a
running run whose heartbeat stopped reads `lost`), so every clause takes it as an argument.
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import Select, and_, case, exists, func, literal, select

from db.entities import RunStatus, RunView
from db.errors import StoreError
from db.models import LatestMetric, Param, Run, Tag
from db.query import ATTRIBUTES, Comparison, Field, parse_filter, parse_order_by

_AGGREGATE_COLUMN = {
    "latest": LatestMetric.value,
    "min": LatestMetric.min_value,
    "max": LatestMetric.max_value,
}


def status_column(lost_after: float):
    """The status a reader sees: `lost` for a running run silent for `lost_after` seconds."""
    cutoff = time.time() - lost_after
    beat = func.coalesce(Run.heartbeat_time, Run.start_time)
    return case(
        (
            and_(Run.status == RunStatus.RUNNING.value, beat < cutoff),
            literal(RunStatus.LOST.value),
        ),
        else_=Run.status,
    )


def search_statement(
    filter: str | None,
    order_by: list[str] | str | None,
    lost_after: float,
    view: RunView | str = RunView.ACTIVE,
) -> Select:
    """SELECT (Run, status) for the filter among the runs of `view`, in the requested order,
    newest first after it."""
    comparisons = parse_filter(filter)
    orders = parse_order_by(order_by)
    status = status_column(lost_after)
    stmt = select(Run, status)
    view = check_view(view)
    if view is RunView.ACTIVE:
        stmt = stmt.where(Run.archived_at.is_(None))
    elif view is RunView.ARCHIVED:
        stmt = stmt.where(Run.archived_at.is_not(None))
    for c in comparisons:
        stmt = stmt.where(_condition(c, status))
    for o in orders:
        for col in _sort_columns(o.field, status):
            stmt = stmt.order_by(
                col.desc().nulls_last() if o.descending else col.asc().nulls_last()
            )
    return stmt.order_by(Run.start_time.desc(), Run.id)


def check_view(view: RunView | str) -> RunView:
    if view not in RunView.__members__.values():
        raise StoreError(f"view: one of {', '.join(v.value for v in RunView)} (received: {view!r})")
    return RunView(view)


def _attribute_column(name: str, status):
    if name == "status":
        return status
    if name == "run_id":
        return Run.id
    if name == "duration":
        return func.coalesce(Run.end_time, Run.heartbeat_time) - Run.start_time
    return getattr(Run, name)


def _sort_columns(f: Field, status) -> list:
    if f.kind == "attribute":
        return [_attribute_column(f.key, status)]
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


def _as_text(value):
    return (
        tuple(_text_literal(v) for v in value) if isinstance(value, tuple) else _text_literal(value)
    )


def _condition(c: Comparison, status):
    f, op, value = c.field, c.op, c.value
    values = value if isinstance(value, tuple) else (value,)
    numeric = all(isinstance(v, float) for v in values)
    if f.kind == "attribute":
        col = _attribute_column(f.key, status)
        if ATTRIBUTES[f.key] == "num":
            values = tuple(_as_number(f.key, v) for v in values)
            value = values if isinstance(value, tuple) else values[0]
            if op in ("LIKE", "ILIKE"):
                raise StoreError(f"filter: {f.key} is a number; LIKE needs a text field")
        elif numeric:
            raise StoreError(f"filter: {f.key} is text; quote the value (received: {values[0]:g})")
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
            value = _as_text(value)
        return exists().where(Param.run_id == Run.id, Param.key == f.key, _compare(col, op, value))
    return exists().where(
        Tag.run_id == Run.id, Tag.key == f.key, _compare(Tag.value, op, _as_text(value))
    )


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
