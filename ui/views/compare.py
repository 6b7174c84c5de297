"""Compare: curves of several runs overlaid, the parameters that differ, final and best values."""

from __future__ import annotations

import streamlit as st

from training.metrics import BYTES_SENT, CENTER_ACCURACY, EPOCH
from ui import address, state
from ui.charts import curve_chart
from ui.curve_view import show_curves
from ui.pages_common import recent_runs_or_stop, show_live, show_table, stop_when_finished
from ui.shaping import X_AXES, curves, params_table, summary

st.title("Compare runs")
store = state.store()
recent, labels = recent_runs_or_stop(store)
picked = address.Param("runs", "compare.runs", address.subset_of(list(labels)), address.joined)
address.restore(
    [picked], {"compare.runs": [i for i in st.session_state.get(state.COMPARE, []) if i in labels]}
)
ids = st.multiselect("Runs", list(labels), format_func=labels.get, key="compare.runs")
address.publish([picked])
if not ids:
    st.info("Pick runs here, or select them on the **Runs** page and press *Compare selected*.")
    st.stop()
st.session_state[state.COMPARE] = ids

keys = [k for k in store.metric_keys(ids) if k != EPOCH]
if not keys:
    st.info("These runs have recorded no metric yet.")
    st.stop()
view = [
    address.Param("metric", "compare.metric", address.one_of(keys)),
    address.Param("x", "compare.x", address.one_of(list(X_AXES))),
    address.Param("smoothing", "compare.smoothing", address.number_in(0.0, 0.99), "{:g}".format),
    address.Param("log", "compare.log", address.flag, address.flag_text),
]
address.restore(
    view,
    {
        "compare.x": "step",
        "compare.smoothing": 0.0,
        "compare.log": False,
    },
)
if st.session_state.get("compare.metric") not in keys:  # the runs changed, or a first visit
    st.session_state["compare.metric"] = CENTER_ACCURACY if CENTER_ACCURACY in keys else keys[0]
cols = st.columns([2, 2, 2, 1])
metric = cols[0].selectbox("Metric", keys, key="compare.metric")
x_axis = cols[1].selectbox("X axis", list(X_AXES), format_func=X_AXES.get, key="compare.x")
smoothing = cols[2].slider("Smoothing", 0.0, 0.99, step=0.01, key="compare.smoothing")
log_scale = cols[3].toggle("Log scale", key="compare.log")
address.publish(view)

shown = [r for r in recent if r.id in ids]


def comparison() -> None:
    """Everything drawn from the runs' records: redrawn every few seconds while one runs."""
    found = store.get_runs(ids)
    runs = [found[i] for i in ids if i in found]  # in the order the user picked them
    wanted = [metric] + ([x_axis] if x_axis in (EPOCH, BYTES_SENT) else [])
    histories = store.metric_histories(ids, wanted, max_points=1000)
    data = curves(histories, runs, metric, x_axis, smoothing)
    if data.empty:
        st.warning(f"None of these runs recorded {metric} against {X_AXES[x_axis].lower()} yet.")
    else:
        show_curves(curve_chart(data, metric, x_axis, log_scale), key="compare.chart")
        # The bytes themselves, not a callable: a deferred file is dropped by the next run,
        # and a click just after a change asked for one that was gone (a download that spun).
        st.download_button(
            "Download these curves (CSV)",
            data.to_csv(index=False).encode("utf-8"),
            file_name=f"compare-{metric}-vs-{x_axis}.csv",
            mime="text/csv",
            key="compare.csv",
            on_click="ignore",
        )
    st.subheader("Final and best")
    show_table(summary(runs, metric))
    st.subheader("Parameters that differ")
    show_table(params_table(runs), hide_index=False)
    stop_when_finished(shown, runs)


show_live(comparison, shown)
