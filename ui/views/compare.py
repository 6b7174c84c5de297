"""Compare: first, whether communicating less paid off (each run's steps, training seconds and
bytes to reach a target, against a baseline, in a table and in words); then curves of several
runs overlaid (several metrics at once, their cursors linked), runs grouped by parameters with a
mean and a band over seeds, the parameters against a final metric, the parameters that differ,
final and best values. Runs are labelled by what differs among them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from training.run.metrics import CENTER_ACCURACY, EPOCH, TRAIN_LOSS
from ui import address, payoff, state
from ui.charts import curve_chart, curve_grid, runs_parallel_chart
from ui.curve_view import show_curves
from ui.pages_common import recent_runs_or_stop, show_live, show_table, stop_when_finished
from ui.parallel_view import show_parallel
from ui.run_labels import (
    LABELS,
    compare_labels,
    same_task,
    task_differences,
    telling_params,
)
from ui.shaping import (
    BANDS,
    METRIC_AXES,
    X_AXES,
    curves,
    grouped_curves,
    params_table,
    summary,
)

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
    st.info("Tick runs on the **Runs** page and press *Compare selected*, or pick them here.")
    st.stop()
st.session_state[state.COMPARE] = ids

keys = [k for k in store.metric_keys(ids) if k != EPOCH]
if not keys:
    st.info("These runs have recorded no metric yet.")
    st.stop()
listed = {r.id: r for r in recent}
shown = [listed[i] for i in ids if i in listed]  # in the order the user picked them
groupable = telling_params(shown) if len(shown) > 1 else []
different = task_differences(shown)
if different:
    st.warning(
        "These runs do not learn the same task, so their curves and costs measure different "
        "things: " + "; ".join(different) + "."
    )
view = [
    address.Param("metric", "compare.metrics", address.subset_of(keys), address.joined),
    address.Param("x", "compare.x", address.one_of(list(X_AXES))),
    address.Param("smoothing", "compare.smoothing", address.number_in(0.0, 0.99), "{:g}".format),
    address.Param("log", "compare.log", address.flag, address.flag_text),
    address.Param("group", "compare.group", address.subset_of(groupable), address.joined),
    # The band means something only for groups: without one it stays out of the address.
    address.Param(
        "band",
        "compare.band",
        address.one_of(list(BANDS)),
        lambda band: band if st.session_state.get("compare.group") else None,
    ),
    # Defaults stay out of the address, so that a shared link is what the user chose.
    address.Param(
        "label",
        "compare.label",
        address.one_of(list(LABELS)),
        lambda v: None if v == "differs" else v,
    ),
    address.Param(
        "baseline",
        "compare.baseline",
        address.one_of(ids),
        lambda v: None if v == payoff.default_baseline(shown) else v,
    ),
    address.Param(
        "target",
        "compare.target",
        address.number_in(-1e300, 1e300),
        lambda v: None if v is None else f"{v:.12g}",
    ),
]
address.restore(
    view,
    {
        "compare.x": "step",
        "compare.smoothing": 0.0,
        "compare.log": False,
        "compare.group": [],
        "compare.band": "std",
        "compare.label": "differs",
        "compare.target": None,
    },
)
if st.session_state.get("compare.baseline") not in ids:
    st.session_state["compare.baseline"] = payoff.default_baseline(shown)
# A first visit, or runs that have none of the metrics shown: the key metric. Metrics emptied
# by hand stay empty.
before = st.session_state.get("compare.metrics")
kept = [m for m in before or [] if m in keys]
if before is None or (before and not kept):
    kept = [m for m in (CENTER_ACCURACY, TRAIN_LOSS) if m in keys][:1] or keys[:1]
st.session_state["compare.metrics"] = kept
st.session_state["compare.group"] = [
    k for k in st.session_state.get("compare.group") or [] if k in groupable
]
cols = st.columns([4, 2, 2, 1])
metrics = cols[0].multiselect(
    "Metrics",
    keys,
    key="compare.metrics",
    help="Each metric is a chart of its own; the cursor on one shows every chart at that x.",
)
x_axis = cols[1].selectbox("X axis", list(X_AXES), format_func=X_AXES.get, key="compare.x")
smoothing = cols[2].slider("Smoothing", 0.0, 0.99, step=0.01, key="compare.smoothing")
log_scale = cols[3].toggle("Log scale", key="compare.log")
cols = st.columns([4, 2, 2, 1])
group = cols[0].multiselect(
    "Group by",
    groupable,
    key="compare.group",
    disabled=not groupable,
    placeholder="No grouping" if groupable else "Nothing differs to group by",
    help="Runs with the same values of these parameters are drawn as one curve: at each x, the "
    "mean of the group's runs that have a value there, and a band around it (seeds left out of "
    "the grouping are what the band spans).",
)
band = cols[1].selectbox(
    "Band", list(BANDS), format_func=BANDS.get, key="compare.band", disabled=not group
)
label_by = cols[2].selectbox(
    "Label runs by",
    list(LABELS),
    format_func=LABELS.get,
    key="compare.label",
    help="What differs among these runs (the algorithm first; at most three parameters), their "
    "configurations' names, or their ids.",
)
if not metrics:
    address.publish(view)
    st.info("Pick one metric or more to draw.")
    st.stop()
names = compare_labels(shown, label_by, groupable if len(shown) > 1 else None)
target_metric = metrics[0]
# A target belongs to its metric: an accuracy of 0.9 is no loss target.
if st.session_state.get("compare.target_of") not in (None, target_metric):
    st.session_state["compare.target"] = None
st.session_state["compare.target_of"] = target_metric


def histories_of(runs, keys) -> dict:
    """Every point (the first crossing of a target must not fall between thinned ones)."""
    return {(r.id, k): store.metric_history(r.id, k) for r in runs for k in keys}


st.subheader("Did it pay off?")
st.caption(
    f"What each run spent to first reach a {target_metric} target: steps, seconds of training "
    "(start-up, evaluations and checkpoints left out; wall seconds for runs that did not count "
    "them) and bytes sent per rank, and each figure against the baseline's."
)
# The default target: what every run learning the baseline's task reached (a run on other
# data would pull it down to a value the others met at their first evaluation).
alike = same_task(shown, st.session_state.get("compare.baseline"))
suggested = payoff.default_target(histories_of(alike, [target_metric]), alike, target_metric)
cols = st.columns([2, 3, 4])
target = cols[0].number_input(
    f"Target {target_metric}",
    format="%g",
    key="compare.target",
    placeholder="none recorded" if suggested is None else f"{suggested:g} (default)",
    help="Left blank: the best value the weakest run reached (of the runs that learn the "
    "baseline's task), so that every one of them has a cost.",
)
baseline = cols[1].selectbox(
    "Baseline",
    ids,
    format_func=names.get,
    key="compare.baseline",
    help="The run the others are measured against: synchronous SGD when one is compared.",
)
address.publish(view)
goal = suggested if target is None else float(target)


def payoff_view(runs) -> None:
    if goal is None:
        st.info(f"None of these runs recorded {target_metric} yet.")
        return
    found = payoff.costs(
        histories_of(runs, [target_metric, *payoff.COUNTERS]), runs, names, target_metric, goal
    )
    lines = payoff.verdicts(found, baseline, goal)
    if lines:
        st.markdown("\n".join(f"- **{line}**" for line in lines))
    show_table(
        payoff.table(found, baseline),
        column_config={
            c: st.column_config.NumberColumn(format="%.2fx") for c in payoff.RATIO_COLUMNS
        },
        key="compare.payoff",
    )


def comparison() -> None:
    """Everything drawn from the runs' records: redrawn every few seconds while one runs."""
    found = store.get_runs(ids)
    runs = [found[i] for i in ids if i in found]  # in the order the user picked them
    payoff_view(runs)
    wanted = [*metrics] + ([x_axis] if x_axis in METRIC_AXES else [])
    histories = store.metric_histories(ids, wanted, max_points=1000)
    charts, tables, missing = [], [], []
    for metric in metrics:
        data = curves(histories, runs, metric, x_axis, smoothing, names)
        if data.empty:
            missing.append(metric)
            continue
        drawn = grouped_curves(data, runs, group, band) if group else data
        charts.append(
            curve_chart(drawn, metric, x_axis, log_scale, height=380 if len(metrics) == 1 else 300)
        )
        tables.append(drawn.assign(metric=metric))
    if missing:
        st.warning(
            f"None of these runs recorded {', '.join(missing)} against "
            f"{X_AXES[x_axis].lower()} yet."
        )
    if charts:
        payload = charts[0] if len(charts) == 1 else curve_grid(charts)
        show_curves(payload, key="compare.chart")
        table = pd.concat(tables, ignore_index=True)
        table.insert(0, "metric", table.pop("metric"))
        # The bytes themselves, not a callable: a deferred file is dropped by the next run,
        # and a click just after a change asked for one that was gone (a download that spun).
        st.download_button(
            "Download these curves (CSV)",
            table.to_csv(index=False).encode("utf-8"),
            file_name=f"compare-{'+'.join(metrics)}-vs-{x_axis}.csv",
            mime="text/csv",
            key="compare.csv",
            on_click="ignore",
        )
    st.subheader("Final and best")
    show_table(summary(runs, metrics, names))
    if groupable:  # the parameters that differ between these runs
        st.subheader(f"Parameters against the final {metrics[0]}")
        parallel = runs_parallel_chart(runs, metrics[0], groupable, names=names)
        if len(parallel["lines"]) < 2:
            st.caption(f"Fewer than two of these runs have a final {metrics[0]} to draw.")
        else:
            show_parallel(parallel, key="compare.parallel")
            st.caption(
                "One line per run, coloured from worst (orange) to best (blue); the best is "
                "thick. Hover a line for its values."
            )
    st.subheader("Parameters that differ")
    show_table(params_table(runs, names), hide_index=False)
    stop_when_finished(shown, runs)


show_live(comparison, shown)
