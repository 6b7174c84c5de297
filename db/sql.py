"""What every part of the store shares: one engine, its sessions, the schema check, and the
checks of ids and keys that each public method applies before any SQL.

The store is split by what it keeps (`db.runs`, `db.jobs`), each part a subclass of `SqlStore`;
`db.store.Store` joins them on one engine for the service and the UI.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from enum import StrEnum

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from db import engine as engines
from db.entities import RunSource
from db.errors import NotFound, StoreError, StoreNotInitialized
from db.settings import db_url
from db.text import KEY_PATTERN, check_key  # noqa: F401 (the store's modules import them here)

LOST_AFTER_SECONDS = float(os.environ.get("EASGD_LOST_AFTER_SECONDS", "60"))
# Patterns as strings too: the REST API's document states them.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
MAX_ID = 2**63 - 1  # the largest SQL BIGINT: no row has a larger id


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise StoreError(
            "run id: letters, digits, '.', '_' or '-', at most 64 characters "
            f"(received: {run_id!r})"
        )
    return run_id


def check_source(source: str, what: str) -> str:
    if source not in RunSource.__members__.values():
        raise StoreError(
            f"{what}: one of {', '.join(s.value for s in RunSource)} (received: {source!r})"
        )
    return RunSource(source).value


def record(cls, row, **computed):
    """A plain record (`db.entities`) from a mapped row: each field from the column of its name,
    unless `computed` gives it; fields with no column keep their defaults."""
    values = {f.name: getattr(row, f.name) for f in fields(cls) if hasattr(type(row), f.name)}
    return cls(**{**values, **computed})


def is_row_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


def check_statuses(status, kind: type[StrEnum], what: str) -> list[str]:
    """A status filter (one, several or none) of `kind`'s values, each checked."""
    wanted = [status] if isinstance(status, str) else list(status or [])
    for w in wanted:
        if w not in kind.__members__.values():
            raise StoreError(f"{what}: one of {', '.join(k.value for k in kind)} (received: {w!r})")
    return wanted


class SqlStore:
    def __init__(self, url: str | None = None, lost_after: float = LOST_AFTER_SECONDS):
        self.url = db_url(url)
        self.engine = engines.make_engine(self.url)
        self.lost_after = lost_after
        self._is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = self.engine.execution_options(easgd_write=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

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

    def ready(self) -> None:
        """`check`, giving a store with no tables yet (a fresh SQLite file, an empty database)
        its tables first: how a shell run, the tracking API and `easgd up` open the store, so
        that the first of them to meet it sets it up, as the service does. A store at another
        revision is left alone (StoreNotInitialized names `easgd init`)."""
        try:
            self.check()
            return
        except StoreNotInitialized:
            try:
                empty = engines.current_revision(self.engine) is None
            except Exception:  # noqa: BLE001 - unreachable: check() below says so
                empty = False
            if not empty:
                raise
        try:
            self.init()
        except Exception as exc:  # noqa: BLE001 - maybe another process setting it up now
            failed: Exception | None = exc
        else:
            failed = None
        # SQLite's DDL is not transactional: another process's migration may still be under
        # way; it has a few seconds to finish before its failure (or ours) is reported.
        for wait in (0.2, 0.5, 1.0, 2.0, 0.0):
            try:
                self.check()
                return
            except StoreNotInitialized:
                if not wait:
                    if failed is not None:
                        raise StoreNotInitialized(
                            f"cannot set up the run store at {self.display_url}: {failed}"
                        ) from failed
                    raise
                time.sleep(wait)

    def _require_row(self, s: Session, model, row_id: int, what: str, lock: bool = False):
        """The row of an integer id, locked on PostgreSQL with `lock`; NotFound names the
        command that lists the `what`s there are."""
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise StoreError(f"{what} id: an integer (received: {row_id!r})")
        row = None
        if is_row_id(row_id):  # no row has another id, and SQL integers cannot carry larger
            stmt = select(model).where(model.id == row_id)
            if lock and not self._is_sqlite:
                stmt = stmt.with_for_update()
            row = s.scalars(stmt).first()
        if row is None:
            listing = "easgd jobs list" if what == "job" else f"easgd {what} list"
            raise NotFound(f"no {what} {row_id}; `{listing}` shows the {what}s there are")
        return row

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    def _dialect_insert(self, model):
        """INSERT with ON CONFLICT, which both dialects have under one spelling."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(model)
