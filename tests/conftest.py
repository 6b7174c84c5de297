"""Fixtures: an isolated EASGD_HOME per test, a real SQLite store in it. Helpers are in
tests/support.py."""

from __future__ import annotations

import pytest


@pytest.fixture
def easgd_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EASGD_HOME", str(home))
    monkeypatch.delenv("EASGD_DB_URL", raising=False)
    return home


@pytest.fixture
def store(easgd_home):
    """A real SQLite store with its tables, in the test's own EASGD_HOME."""
    from db.store import Store

    s = Store()
    s.init()
    yield s
    s.dispose()
