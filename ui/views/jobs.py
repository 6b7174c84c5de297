"""Jobs: the queue and recent jobs, live, with progress, the log's tail and cancel."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from service.client import ApiError
from service.logs import tail
from ui import state

st.title("Jobs")


def _progress(runs, job) -> float | None:
    run = runs.get(job.run_id) if job.run_id else None
    if run is None:
        return None if not job.run_id else 0.0
    return (run.last_step / run.total_steps) if run.total_steps else None


@st.fragment(run_every=2)
def live() -> None:
    store = state.store()
    jobs = store.list_jobs(limit=100)
    runs = store.get_runs([j.run_id for j in jobs if j.run_id])
    if not jobs:
        st.info(
            "No jobs yet. Launch one on the **Launch** page, or from a shell: "
            "`easgd submit configs/lenet-mnist5k-eamsgd.yaml`"
        )
        return
    frame = pd.DataFrame(
        [
            {
                "id": j.id,
                "name": j.name,
                "status": j.status.value,
                "progress": _progress(runs, j),
                "workers": j.workers,
                "hosts": j.hosts,
                "run": j.run_id,
                "source": j.source,
                "created": time.strftime("%H:%M:%S", time.localtime(j.created_at)),
                "message": (j.message or "").splitlines()[0] if j.message else None,
            }
            for j in jobs
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0, max_value=1, format="percent"
            )
        },
    )
    st.caption(
        f"refreshed {time.strftime('%H:%M:%S')}: "
        f"{sum(j.status.value == 'running' for j in jobs)} running, "
        f"{sum(j.status.value == 'queued' for j in jobs)} queued"
    )
    chosen = st.selectbox(
        "Job", [j.id for j in jobs], key="jobs.selected", format_func=lambda i: f"job {i}"
    )
    job = next(j for j in jobs if j.id == chosen)
    cols = st.columns([3, 1])
    cols[0].markdown(
        f"**job {job.id}**: {job.status.value}" + (f", run `{job.run_id}`" if job.run_id else "")
    )
    if not job.status.is_terminal() and cols[1].button("Cancel job", key=f"cancel-{job.id}"):
        try:
            state.client().cancel(job.id)
            st.toast(f"job {job.id}: cancel requested")
        except ApiError as exc:
            st.error(str(exc))
    if job.message:
        st.code(job.message, language=None)
    st.text("log (last 40 lines)")
    st.code(tail(job.log_path, 40) or "(no output yet)", language=None)


live()
