"""Run: one run's configuration, curves, system metrics, events, log and files; its note and
tags, archiving and deletion, which go through the service's API (ui/changes.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from db.text import NOTE_TAG
from service.client import Client
from service.logs import tail
from training.run.metrics import CENTER_ACCURACY, CENTER_LOSS, RUN_PAGE_CURVES, WORKERS
from ui import address, state
from ui.changes import through_service
from ui.charts import curve_chart
from ui.curve_view import show_curves
from ui.navigation import PATHS
from ui.pages_common import (
    recent_runs_or_stop,
    run_config,
    show_live,
    show_table,
    stop_when_finished,
)
from ui.shaping import curves, system_curves

st.title("Run")
if done := st.session_state.pop("run.edit.done", None):  # what the last edit did
    st.success(done)
store = state.store()
recent, labels = recent_runs_or_stop(store, view="all")
ids = list(labels)
chosen = [address.Param("run", "run.id", address.one_of(ids))]
address.restore(chosen)
if st.session_state.get("run.id") not in ids:  # a first visit, or a run no longer listed
    remembered = st.session_state.get(state.RUN)
    st.session_state["run.id"] = remembered if remembered in ids else ids[0]
run_id = st.selectbox("Run", ids, format_func=labels.get, key="run.id")
address.publish(chosen)
st.session_state[state.RUN] = run_id
first = store.get_run(run_id)
if st.button("Clone into the Launch form"):
    st.session_state[state.CLONE] = run_config(first)
    st.switch_page(PATHS["launch"])


def run_view() -> None:
    """Everything drawn from the run's records: redrawn every few seconds while it runs."""
    run = store.get_run(run_id)
    cols = st.columns(5)
    cols[0].metric("status", run.status)
    cols[1].metric(
        "step", f"{run.last_step}/{run.total_steps}" if run.total_steps else run.last_step
    )
    # The center's scores: accuracy, or a model's own (center_mean_absolute_error...).
    scores = sorted(
        (k for k in run.metrics if k.startswith("center_") and k != CENTER_LOSS),
        key=lambda k: (k != CENTER_ACCURACY, k),
    ) or [CENTER_ACCURACY]
    acc = run.metrics.get(scores[0])
    cols[2].metric(
        scores[0].replace("_", " "), f"{acc.value:.4f}" if acc and acc.value is not None else "-"
    )
    cols[3].metric("workers", run.workers)
    cols[4].metric("duration", f"{run.duration:.0f} s" if run.duration is not None else "-")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.start_time))
    st.caption(
        f"source {run.source}; started {started}" + (f"; job {run.job_id}" if run.job_id else "")
    )
    if run.error:
        st.error(run.error)
    stop_when_finished([first], [run])

    curves_tab, system_tab, config_tab, events_tab, log_tab, files_tab = st.tabs(
        ["Curves", "System", "Configuration", "Events", "Log", "Files"]
    )
    with curves_tab:
        # The world size only once it changed (a resize or a restart with fewer workers).
        metrics = [
            k
            for k in dict.fromkeys([*scores, *RUN_PAGE_CURVES])
            if k in run.metrics and (k != WORKERS or run.metrics[k].min != run.metrics[k].max)
        ]
        histories = store.metric_histories([run.id], metrics, max_points=1000)
        for m in metrics:
            data = curves(histories, [run], m)
            if not data.empty:
                show_curves(curve_chart(data, m, height=220), key=f"run.chart.{m}")
    with system_tab:
        keys = [k for k in store.metric_keys([run.id]) if k.startswith("system/")]
        by_field = system_curves(
            store.metric_histories([run.id], keys, max_points=1000), run.id, keys
        )
        if not by_field:
            st.caption(
                "No system metrics: they are logged at evaluations by runs since they exist."
            )
        for field, data in by_field.items():
            show_curves(curve_chart(data, field, height=200), key=f"run.system.{field}")
    with config_tab:
        st.code(yaml.safe_dump(run_config(run), sort_keys=False), language="yaml")
    with events_tab:
        events = store.events(run.id)
        show_table(
            pd.DataFrame(
                [
                    {
                        "time": time.strftime("%H:%M:%S", time.localtime(e.time)),
                        "kind": e.kind,
                        "step": e.step,
                        "message": e.message,
                    }
                    for e in events
                ]
            )
        )
    with log_tab:
        job = store.job_for_run(run.id)
        if job and job.log_path:
            st.code(tail(job.log_path, 100) or "(empty)", language=None, wrap_lines=True)
        else:
            st.caption("This run was started from a shell; its output went to that terminal.")
    with files_tab:
        if run.run_dir and Path(run.run_dir).is_dir():
            d = Path(run.run_dir)
            st.markdown(f"Run directory: `{d}`")
            ckpts = sorted(
                p.name for p in (d / "checkpoints").glob("step-*") if (p / "meta.json").exists()
            )
            st.markdown(
                f"Checkpoints: {', '.join(f'`{c}`' for c in ckpts) or 'none yet'} "
                f"(resume with `--resume {d}`)"
            )
            model = d / "center.keras"
            if model.exists():
                st.markdown(f"Exported center: `{model}`")
                st.code(
                    f"import keras\nmodel = keras.models.load_model({str(model)!r})",
                    language="python",
                )
        else:
            st.caption(f"The run directory {run.run_dir or ''} is not on this machine.")


show_live(run_view, [first])


def _done(message: str) -> None:
    st.session_state["run.edit.done"] = message
    st.rerun()


def _edit(change: Callable[[Client], Any], done: str) -> None:
    """Make `change` through the service, then say `done`; a refusal stays on the page."""
    if through_service(change) is not None:
        _done(done)


def _not_asking() -> None:
    st.session_state.pop("run.delete.asking", None)
    st.session_state.pop("run.delete.plan", None)


@st.dialog("Delete this run?", on_dismiss=_not_asking)
def _confirm_delete(files: bool) -> None:
    # Asked once while the dialog is open: the service walks the run's directory to answer, and
    # the deletion itself plans again.
    asked = st.session_state.get("run.delete.plan")
    if asked is not None and asked[0] == (run_id, files):
        plan = asked[1]
    else:
        plan = through_service(lambda c: c.deletion(run_id, files))
        if plan is None:
            return
        st.session_state["run.delete.plan"] = ((run_id, files), plan)
    st.write(plan["message"])
    left, right = st.columns(2)
    if right.button("Cancel", key="run.delete.cancel"):
        _not_asking()
        st.rerun()
    if left.button("Delete", type="primary", key="run.delete.confirm"):
        _not_asking()
        removal = through_service(lambda c: c.delete_run(run_id, files))
        if removal is None:
            return
        st.session_state.pop("run.id", None)
        st.session_state.pop(state.RUN, None)
        _done(removal["message"])


with st.expander("Note, tags, archive, delete", key="run.manage"):
    run = store.get_run(run_id)
    note = st.text_area("Note", value=run.tags.get(NOTE_TAG, ""), key=f"run.note.{run_id}")
    if st.button("Save note", key="run.note.save"):
        _edit(lambda c: c.set_note(run_id, note or None), "note saved")
    tags = {k: v for k, v in run.tags.items() if k != NOTE_TAG}
    edited = st.data_editor(
        pd.DataFrame({"tag": list(tags), "value": list(tags.values())}, dtype=str),
        num_rows="dynamic",
        key=f"run.tags.{run_id}",
        hide_index=True,
    )
    if st.button("Save tags", key="run.tags.save"):
        rows = {
            str(r.tag).strip(): ("" if pd.isna(r.value) else str(r.value))
            for r in edited.itertuples()
            if not pd.isna(r.tag) and str(r.tag).strip()
        }
        changes = {**{k: None for k in tags if k not in rows}, **rows}
        _edit(
            lambda c: c.set_tags(run_id, changes),
            f"{len(rows)} tag{'' if len(rows) == 1 else 's'} saved",
        )
    left, right = st.columns(2)
    if run.archived_at is None:
        if left.button("Archive", key="run.archive", help="hidden from Runs and Compare; kept"):
            _edit(
                lambda c: c.archive_run(run_id),
                f"run {run_id} archived: Runs and Compare no longer list it",
            )
    elif left.button("Restore", key="run.restore"):
        _edit(lambda c: c.restore_run(run_id), f"run {run_id} restored")
    files = right.checkbox("with its directory", key="run.delete.files")
    if right.button("Delete…", key="run.delete"):
        st.session_state["run.delete.asking"] = run_id
    if st.session_state.get("run.delete.asking") == run_id:  # stays open across reruns
        _confirm_delete(files)
