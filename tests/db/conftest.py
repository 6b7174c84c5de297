"""The store suite runs unchanged on SQLite and on the PostgreSQL server `make test` starts."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, make_url, text

from db.store import Store

POSTGRES_URL = os.environ.get("EASGD_TEST_POSTGRES_URL")


def _own_database(url: str) -> str:
    """Under pytest-xdist, each worker resets and fills a database of its own on the same server
    (created once, beside the given one), so that two workers never drop each other's tables."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    given = make_url(url)
    name = f"{given.database}_{worker}"
    admin = create_engine(given.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if found.scalar() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


def _reset_postgres(url: str) -> None:
    s = Store(url)
    with s.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    s.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server: EASGD_TEST_POSTGRES_URL is unset (make test starts one)")
    return _own_database(POSTGRES_URL)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    s.init()
    yield s
    s.dispose()
