"""Where the product keeps its data: `EASGD_HOME` (default ~/.easgd) and the store's URL.

Every entry point (the command line, `python -m training`, the tracking API, the service and
the UI) finds the store by this one rule, so that a plain shell sees what `easgd up` shows.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def default_home() -> Path:
    return (Path.home() / ".easgd").expanduser().resolve()


def home() -> Path:
    return Path(os.environ.get("EASGD_HOME") or default_home()).expanduser().resolve()


def default_db_url() -> str:
    return f"sqlite:///{home() / 'easgd.db'}"


def db_url(explicit: str | None = None) -> str:
    """A --db-url flag, then EASGD_DB_URL, then the SQLite file in the data directory."""
    return explicit or os.environ.get("EASGD_DB_URL") or default_db_url()


def runs_dir() -> Path:
    return home() / "runs"


def shell_setting(explicit: str | None = None) -> str | None:
    """What another shell must set to find the store this process uses (None: nothing, it is
    the default one). A URL is not repeated, since it may hold a password."""
    if explicit or os.environ.get("EASGD_DB_URL"):
        return "EASGD_DB_URL set to the same URL"
    if home() != default_home():
        return f"export EASGD_HOME={shlex.quote(str(home()))}"
    return None
