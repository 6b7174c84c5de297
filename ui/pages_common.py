"""Small helpers several pages share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from db.entities import RunRecord
from ui.shaping import config_of, run_label


def recent_runs_or_stop(store, limit: int = 500) -> tuple[list[RunRecord], dict[str, str]]:
    """The newest runs and their labels; with no run at all, the teaching empty state."""
    import streamlit as st

    from ui import state

    recent = store.list_runs(limit=limit)
    if not recent:
        st.info(state.FIRST_RUN_HINT)
        st.stop()
    return recent, {r.id: run_label(r) for r in recent}


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
