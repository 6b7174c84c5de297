"""Sweeps: each sweep's trials, the best so far, the parameters against the final metric, and
stop. The sweep shown is in the address (`/sweeps?sweep=ID`)."""

from __future__ import annotations

import streamlit as st

from db.entities import SweepRecord
from ui import address, state
from ui.changes import through_service
from ui.curve_view import show_curves
from ui.parallel_view import show_parallel
from ui.sweep_view import best_so_far_chart, parallel_chart, trials_frame

st.title("Sweeps")
store = state.store()
sweeps = store.list_sweeps(limit=200)
if not sweeps:
    st.info(
        "No sweeps yet. Start one from a shell:\n\n"
        "```\neasgd sweep create configs/sweep-digits-random.yaml\n```"
    )
    st.stop()

labels = {s.id: f"sweep {s.id}: {s.name or '-'} ({s.method})" for s in sweeps}


def _known(text: str) -> int:
    """A sweep id of the list, from the address (ValueError for anything else)."""
    sweep_id = int(text)
    if sweep_id not in labels:
        raise ValueError(text)
    return sweep_id


chosen = [address.Param("sweep", "sweeps.id", _known)]
address.restore(chosen)
if st.session_state.get("sweeps.id") not in labels:
    st.session_state["sweeps.id"] = sweeps[0].id
sweep_id = st.selectbox("Sweep", list(labels), format_func=labels.get, key="sweeps.id")
address.publish(chosen)


def _summary(sweep: SweepRecord) -> None:
    best = sweep.best_trial()
    ended = sum(t.state.is_terminal() for t in sweep.trials)
    cols = st.columns(4)
    cols[0].metric("status", sweep.status.value)
    cols[1].metric("trials ended", f"{ended} of {sweep.run_cap}")
    cols[2].metric(
        f"best {sweep.metric} ({sweep.goal})",
        "-" if best is None else f"{best.value:.4g}",
        help=None if best is None else f"trial {best.number}, run {best.run_id}",
    )
    cols[3].metric("at once", sweep.concurrency)
    if best is not None:
        settings = ", ".join(
            f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
            for k, v in sorted(best.params.items())
        )
        st.markdown(f"**Best: trial {best.number}** (run `{best.run_id}`): {settings}")
    if sweep.message:
        st.caption(sweep.message)


@st.fragment(run_every=2 if not store.get_sweep(sweep_id).status.is_terminal() else None)
def sweep_view() -> None:
    """Redrawn every 2 s while the sweep runs."""
    sweep = store.get_sweep(sweep_id)
    _summary(sweep)
    if not sweep.status.is_terminal() and st.button(
        "Stop sweep", key=f"sweeps.stop.{sweep.id}", disabled=sweep.stop_requested
    ):
        if through_service(lambda c: c.stop_sweep(sweep.id)) is not None:
            st.toast(f"sweep {sweep.id}: stop requested")
    st.subheader("Parameters against the final metric")
    payload = parallel_chart(sweep)
    if payload["lines"]:
        show_parallel(payload, key="sweeps.parallel")
        st.caption("One line per trial with a final metric; dashed: stopped early; thick: best.")
    else:
        st.info("No trial has a final metric yet.")
    st.subheader("Best so far")
    curve = best_so_far_chart(sweep)
    if curve["series"]:
        show_curves(curve, key="sweeps.best")
    else:
        st.info("No trial has succeeded yet.")
    st.subheader("Trials")
    st.dataframe(
        trials_frame(sweep),
        hide_index=True,
        column_config={sweep.metric: st.column_config.NumberColumn(format="%.4f")},
    )


sweep_view()
