"""Compare: curves of several runs overlaid, the parameters that differ, final and best values."""

from __future__ import annotations

from functools import partial

import streamlit as st

from training.metrics import BYTES_SENT, CENTER_ACCURACY, EPOCH
from ui import state
from ui.charts import curve_chart
from ui.curve_view import show_curves
from ui.pages_common import recent_runs_or_stop
from ui.shaping import X_AXES, curves, params_table, summary

st.title("Compare runs")
store = state.store()
recent, labels = recent_runs_or_stop(store)
linked = st.query_params.get("runs")  # ?runs=a,b,c shares a comparison
chosen = linked.split(",") if linked else st.session_state.get(state.COMPARE, [])
default = [i for i in chosen if i in labels]
ids = st.multiselect(
    "Runs", list(labels), default=default, format_func=labels.get, key="compare.runs"
)
if not ids:
    st.info("Pick runs here, or select them on the **Runs** page and press *Compare selected*.")
    st.stop()
st.session_state[state.COMPARE] = ids
by_id = {r.id: r for r in recent}
runs = [by_id[i] for i in ids]  # in the order the user picked them

keys = [k for k in store.metric_keys(ids) if k != EPOCH]
cols = st.columns([2, 2, 2, 1])
metric = cols[0].selectbox(
    "Metric",
    keys,
    key="compare.metric",
    index=keys.index(CENTER_ACCURACY) if CENTER_ACCURACY in keys else 0,
)
x_axis = cols[1].selectbox("X axis", list(X_AXES), format_func=X_AXES.get, key="compare.x")
smoothing = cols[2].slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="compare.smoothing")
log_scale = cols[3].toggle("Log scale", key="compare.log")

wanted = [metric] + ([x_axis] if x_axis in (EPOCH, BYTES_SENT) else [])
histories = store.metric_histories(ids, wanted, max_points=1000)
data = curves(histories, runs, metric, x_axis, smoothing)
if data.empty:
    st.warning(f"None of these runs recorded {metric} against {X_AXES[x_axis].lower()} yet.")
else:
    show_curves(curve_chart(data, metric, x_axis, log_scale), key="compare.chart")
    st.download_button(
        "Download these curves (CSV)",
        partial(data.to_csv, index=False),  # written when clicked, not on every rerun
        file_name=f"compare-{metric}-vs-{x_axis}.csv",
        mime="text/csv",
    )

st.subheader("Final and best")
st.dataframe(summary(runs, metric), hide_index=True)
st.subheader("Parameters that differ")
st.dataframe(params_table(runs))
