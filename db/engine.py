"""Engines for any SQLAlchemy URL, and the migrations that `easgd init` and the service apply."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from db.errors import EasgdError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30000


class StoreConfigError(EasgdError, ValueError):
    """The store's URL cannot be used; the service cannot answer without it."""

    http_status = 503


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    # A writing transaction takes the lock when it starts, so concurrent writers queue on the
    # busy timeout instead of failing a read-to-write upgrade with "database is locked".
    immediate = conn.get_execution_options().get("easgd_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreConfigError(
            f"store URL: not a SQLAlchemy URL, e.g. sqlite:///path/easgd.db or "
            f"postgresql+psycopg://user@host/db (received: {url!r})"
        ) from None
    try:
        return _engine_for(parsed)
    except NoSuchModuleError:
        raise StoreConfigError(
            f"store URL: unknown database kind {parsed.drivername!r}; use sqlite:///path/easgd.db "
            f"or postgresql+psycopg://user@host/db (received: {parsed.render_as_string()!r})"
        ) from None
    except (ModuleNotFoundError, ArgumentError, TypeError) as exc:
        raise StoreConfigError(
            f"store URL: cannot use {parsed.drivername}: {exc} "
            f"(received: {parsed.render_as_string()!r})"
        ) from None


def _engine_for(parsed: URL) -> Engine:
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` (an earlier one only to test the upgrade from a store left there)."""
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate back to `revision`, keeping the rows of every table that revision has."""
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config_offline()).get_current_head()


def _alembic_config_offline() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg
