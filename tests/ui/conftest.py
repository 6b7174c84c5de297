"""Fixtures of the UI tests."""

from __future__ import annotations

import pytest
import streamlit as st

from db.store import Store


@pytest.fixture
def ui_store(easgd_home):
    """A real SQLite store in a fresh EASGD_HOME, and no store cached by the app from before."""
    st.cache_resource.clear()  # the app caches its store per process
    store = Store()
    store.init()
    yield store
    st.cache_resource.clear()
    store.dispose()
