"""Small helpers several pages share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from db.entities import RunRecord, RunStatus
from ui.shaping import BYTES_COLUMNS, config_of, run_label

# How often a page showing a running run redraws it (the Jobs page refreshes as often).
LIVE_SECONDS = 2.0
# What an empty cell shows, as the command line's tables do.
EMPTY = "-"
# Numbers by magnitude in tables: 0.9733, 12.5, 1.3e-7 (a fixed "%.4f" shows 0.0000).
NUMBER_FORMAT = "%.4g"


def recent_runs_or_stop(
    store, limit: int = 500, view: str = "active"
) -> tuple[list[RunRecord], dict[str, str]]:
    """The newest runs (of `view`: active, archived or all) and their labels; with no run at
    all, the teaching empty state."""
    import streamlit as st

    from ui import state

    recent = store.list_runs(limit=limit, view=view)
    if not recent:
        st.info(state.FIRST_RUN_HINT)
        st.stop()
    return recent, {r.id: run_label(r) + (" (archived)" if r.archived_at else "") for r in recent}


def run_config(run: RunRecord) -> dict[str, Any]:
    """The run's resolved configuration: its config.yaml when the directory is here, else the
    parameters the store kept."""
    if run.run_dir:
        path = Path(run.run_dir) / "config.yaml"
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
    return config_of(run)


def live_every(runs: Sequence[RunRecord]) -> float | None:
    """How often a view of `runs` is redrawn: every LIVE_SECONDS while one of them is running."""
    return LIVE_SECONDS if any(r.status == RunStatus.RUNNING for r in runs) else None


def show_live(view: Callable[[], None], runs: Sequence[RunRecord]) -> None:
    """Draw `view`, as a fragment redrawn every few seconds while one of `runs` is running; as
    plain page code once none is (nothing left to refresh)."""
    import streamlit as st

    every = live_every(runs)
    (st.fragment(view, run_every=every) if every else view)()


def stop_when_finished(shown: Sequence[RunRecord], now: Sequence[RunRecord]) -> None:
    """In a live view: once no run shown as running still runs, rerun the page, which then draws
    the view once, with no timer; while one does, say that the view is live."""
    import streamlit as st

    if live_every(shown) is None:
        return
    if live_every(now) is None:
        st.rerun()
    st.caption(f"Live: redrawn every {LIVE_SECONDS:g} s while a run is running.")


def show_table(
    frame: pd.DataFrame,
    column_config: dict[str, Any] | None = None,
    hide_index: bool = True,
    **kwargs: Any,
) -> Any:
    """st.dataframe as every page shows tables: empty cells blank but for a dash, numbers by
    magnitude, bytes in the same units as the charts (Streamlit's "bytes" format); returns
    what st.dataframe does (its selection, where `on_select` asks for one)."""
    import streamlit as st

    config: dict[str, Any] = {}
    for name in frame.columns:
        if name in BYTES_COLUMNS:
            config[name] = st.column_config.NumberColumn(format="bytes")
        elif pd.api.types.is_float_dtype(frame[name]):
            config[name] = st.column_config.NumberColumn(format=NUMBER_FORMAT)
    config.update(column_config or {})
    return st.dataframe(
        frame, hide_index=hide_index, column_config=config, placeholder=EMPTY, **kwargs
    )
