"""The store suite runs unchanged on SQLite and on the PostgreSQL server `make test` starts."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from db.store import Store

POSTGRES_URL = os.environ.get("EASGD_TEST_POSTGRES_URL")


def _reset_postgres(url: str) -> None:
    s = Store(url)
    with s.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    s.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server: EASGD_TEST_POSTGRES_URL is unset (make test starts one)")
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    s.init()
    yield s
    s.dispose()
