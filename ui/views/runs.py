"""Runs: the whole history, filtered with the CLI's query language; pick runs to compare."""

from __future__ import annotations

import streamlit as st

from db.errors import StoreError
from db.query import FilterError
from ui import address, state
from ui.pages_common import show_table
from ui.shaping import run_label, runs_frame

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
    # The run column stays in view when the table scrolls to the right.
    show_table(runs_frame(runs), {"run": st.column_config.TextColumn("run", pinned=True)})
    st.caption(
        f"{len(runs)} run{'' if len(runs) == 1 else 's'}; "
        "parameters shown are those that differ between them"
    )
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
        st.switch_page(state.PAGE_PATHS["compare"], query_params={"runs": ",".join(picked)})
    one = cols[1].selectbox(
        "Open one run",
        [None, *labels],
        format_func=lambda i: "(choose)" if i is None else labels[i],
        key="runs.open",
    )
    if one:
        st.session_state[state.RUN] = one
        st.switch_page(state.PAGE_PATHS["run"], query_params={"run": one})
