"""Fixtures of the UI tests."""

from __future__ import annotations

import pytest
import streamlit as st

from db.store import Store
from tests.support import Service
from tests.ui.chromium import chromium_browser, served, stop_chromium, store_in
from tests.ui.seeded_runs import seed


@pytest.fixture
def ui_store(easgd_home):
    """A real SQLite store in a fresh EASGD_HOME, and no store cached by the app from before."""
    st.cache_resource.clear()  # the app caches its store per process
    store = Store()
    store.init()
    yield store
    st.cache_resource.clear()
    store.dispose()


@pytest.fixture
def ui_service(ui_store, easgd_home, monkeypatch):
    """`easgd serve` on the UI's store, requiring a token, and the app pointed at it with that
    token as `easgd up` points it: the pages' changes go through its API."""
    monkeypatch.setenv("EASGD_API_TOKEN", "ui-test-token")
    service = Service(easgd_home).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    st.cache_resource.clear()  # a client made before would call another address
    yield service
    service.stop()


@pytest.fixture
def product(tmp_path):
    """`easgd up` on loopback in a fresh EASGD_HOME (tests/ui/chromium.py)."""
    with served(tmp_path / "home") as p:
        yield p


@pytest.fixture(scope="package")
def seeded(tmp_path_factory):
    """`easgd up` on a store holding tests/ui/seeded_runs.py's runs, for the browser tests that
    only read them: one start for all of those modules."""
    home = tmp_path_factory.mktemp("seeded") / "home"
    store = store_in(home)
    seed(store)
    store.dispose()
    with served(home) as p:
        yield p


@pytest.fixture(scope="package")
def seeded_browser(seeded):
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="session", autouse=True)
def _chromium_stops():
    """The shared Chromium (started by the first browser test that asks) ends with the tests."""
    yield
    stop_chromium()
