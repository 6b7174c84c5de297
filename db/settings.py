"""Where the product keeps its data: `EASGD_HOME` (default ~/.easgd) and the store's URL."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("EASGD_HOME") or Path.home() / ".easgd").expanduser().resolve()


def default_db_url() -> str:
    return f"sqlite:///{home() / 'easgd.db'}"


def db_url(explicit: str | None = None) -> str:
    """A --db-url flag, then EASGD_DB_URL, then the SQLite file in the data directory."""
    return explicit or os.environ.get("EASGD_DB_URL") or default_db_url()


def runs_dir() -> Path:
    return home() / "runs"
