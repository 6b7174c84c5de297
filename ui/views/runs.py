"""Runs: the whole history, filtered with the CLI's query language; pick runs to compare."""

from __future__ import annotations

import streamlit as st

from db.errors import StoreError
from db.query import FilterError
from training.metrics import BYTES_SENT, CENTER_ACCURACY, TRAIN_LOSS
from ui import state
from ui.shaping import run_label, runs_frame

st.title("Runs")
store = state.store()
text = st.text_input(
    "Filter",
    key="runs.filter",
    placeholder="params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95",
    help="The language of `easgd runs query`: params.KEY, metrics.KEY, min()/max(), tags.KEY, "
    "status, source, workers... joined with 'and'.",
)
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
    st.dataframe(
        runs_frame(runs),
        hide_index=True,
        column_config={
            CENTER_ACCURACY: st.column_config.NumberColumn(format="%.4f"),
            TRAIN_LOSS: st.column_config.NumberColumn(format="%.4f"),
            BYTES_SENT: st.column_config.NumberColumn(format="%d"),
        },
    )
    st.caption(f"{len(runs)} runs; parameters shown are those that differ between them")
    labels = {r.id: run_label(r) for r in runs}
    remembered = [i for i in st.session_state.get(state.COMPARE, []) if i in labels]
    picked = st.multiselect(
        "Runs to compare",
        list(labels),
        default=remembered,
        format_func=labels.get,
        key="runs.picked",
    )
    cols = st.columns(2)
    if cols[0].button("Compare selected", type="primary", disabled=not picked):
        st.session_state[state.COMPARE] = picked
        st.switch_page(state.PAGE_PATHS["compare"])
    one = cols[1].selectbox(
        "Open one run",
        [None, *labels],
        format_func=lambda i: "(choose)" if i is None else labels[i],
        key="runs.open",
    )
    if one:
        st.session_state[state.RUN] = one
        st.switch_page(state.PAGE_PATHS["run"])
