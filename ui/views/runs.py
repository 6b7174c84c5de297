"""Runs: the whole history, filtered with the CLI's query language; pick runs to compare."""

from __future__ import annotations

import re

import streamlit as st

from db.errors import StoreError
from db.query import FilterError
from db.sql import RUN_ID_PATTERN
from ui import address, state
from ui.navigation import PATHS
from ui.pages_common import show_table
from ui.shaping import runs_frame

RUN_ID = re.compile(RUN_ID_PATTERN)


st.title("Runs")
store = state.store()
query = [address.Param("filter", "runs.filter", write=lambda text: text or None)]
address.restore(query)
text = st.text_input(
    "Filter",
    key="runs.filter",
    placeholder="params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95",
    help="The language of `easgd runs query`: params.KEY, metrics.KEY, min()/max(), tags.KEY, "
    "status, source, workers... joined with 'and'.",
)
address.publish(query)
try:
    runs = store.search_runs(text or None, limit=500)
except FilterError as exc:
    st.error(f"Invalid filter: {exc.short}")
    runs = []
except StoreError as exc:
    st.error(f"Invalid filter: {exc}")
    runs = []

if not runs and not text:
    st.info(state.FIRST_RUN_HINT)
elif not runs:
    st.warning("No run matches this filter.")
else:
    ids = [r.id for r in runs]

    def known_runs(text: str) -> list[str]:
        """The ticked runs a link names: those of its run ids (the store's rule) that a run
        has, at most 500, repeats dropped; read once, when the address comes from outside."""
        named = list(dict.fromkeys(i for i in text.split(",") if RUN_ID.fullmatch(i)))[:500]
        found = store.get_runs(named)
        known = [i for i in named if i in found]
        if not known:
            raise ValueError(text)
        return known

    # The ticked runs live in the address too, those a filter hides included: ticks follow the
    # runs, not the rows (the table's own state holds row numbers, which point at other runs
    # once the filter changes, so the ticks are laid anew by run id then).
    ticked = address.Param("selected", "runs.selected", known_runs, address.joined)
    # Back from Compare, the runs compared there are the ones ticked.
    compared = list(st.session_state.get(state.COMPARE, []))
    if st.session_state.get("runs.compared") != compared:
        st.session_state["runs.compared"] = compared
        st.session_state["runs.selected"] = compared
    address.restore([ticked], {"runs.selected": []})
    wanted = list(st.session_state["runs.selected"])
    if st.session_state.get("runs.table.laid") != (ids, wanted):
        row_of = {run_id: row for row, run_id in enumerate(ids)}
        rows = [row_of[i] for i in wanted if i in row_of]
        st.session_state["runs.table"] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    # The run column stays in view when the table scrolls to the right.
    event = show_table(
        runs_frame(runs),
        {"run": st.column_config.TextColumn("run", pinned=True)},
        key="runs.table",
        on_select="rerun",
        selection_mode="multi-row",
    )
    shown = {ids[i] for i in event.selection.rows if 0 <= i < len(ids)}
    hidden = [i for i in wanted if i not in ids]
    picked = [i for i in ids if i in shown] + hidden
    st.session_state["runs.selected"] = picked
    st.session_state["runs.table.laid"] = (ids, picked)
    address.publish([ticked])
    ticks = ""
    if picked:
        ticks = f" {len(picked)} ticked" + (
            f", {len(hidden)} of them hidden by the filter." if hidden else "."
        )
    st.caption(
        f"{len(runs)} run{'' if len(runs) == 1 else 's'}; "
        "parameters shown are those that differ between them. "
        "Tick runs to compare them, or one to open it." + ticks
    )
    buttons = st.container(horizontal=True)
    if buttons.button(
        f"Compare selected ({len(picked)})" if picked else "Compare selected",
        type="primary",
        disabled=not picked,
        key="runs.compare",
    ):
        st.session_state[state.COMPARE] = picked
        st.switch_page(PATHS["compare"], query_params={"runs": ",".join(picked)})
    if buttons.button("Open selected run", disabled=len(picked) != 1, key="runs.open"):
        st.session_state[state.RUN] = picked[0]
        st.switch_page(PATHS["run"], query_params={"run": picked[0]})
