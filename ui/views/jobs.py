"""Jobs: the queue and recent jobs, live, with progress, the log's tail and cancel."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from db.entities import RunStatus
from service.logs import tail
from ui import address, state
from ui.changes import through_service
from ui.navigation import PATHS
from ui.pages_common import LIVE_SECONDS, show_table

st.title("Jobs")


def _progress(runs, job) -> float | None:
    run = runs.get(job.run_id) if job.run_id else None
    if run is None:
        return None if not job.run_id else 0.0
    return (run.last_step / run.total_steps) if run.total_steps else None


@st.fragment(run_every=LIVE_SECONDS)
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
                "run": f"run?run={j.run_id}" if j.run_id else None,
                "source": j.source,
                "created": time.strftime("%H:%M:%S", time.localtime(j.created_at)),
                "message": (j.message or "").splitlines()[0] if j.message else None,
            }
            for j in jobs
        ]
    )
    if any(j.scheduler_job for j in jobs):  # a Slurm service: its job id, and why it waits
        frame.insert(3, "scheduler", [_scheduler(j) for j in jobs])
    show_table(
        frame,
        {
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0, max_value=1, format="percent"
            ),
            # A link to the run's page, relative to this one: it keeps any base URL.
            "run": st.column_config.LinkColumn("run", display_text=r"run\?run=(.*)"),
        },
    )
    st.caption(
        f"refreshed {time.strftime('%H:%M:%S')}: "
        f"{sum(j.status.value == 'running' for j in jobs)} running, "
        f"{sum(j.status.value == 'queued' for j in jobs)} queued"
    )
    ids = [j.id for j in jobs]
    selected = [address.Param("job", "jobs.selected", lambda text: _listed(int(text), ids))]
    address.restore(selected)
    chosen = st.selectbox("Job", ids, key="jobs.selected", format_func=lambda i: f"job {i}")
    address.publish(selected)
    job = next(j for j in jobs if j.id == chosen)
    run = runs.get(job.run_id) if job.run_id else None
    cols = st.columns([3, 1])
    with cols[0]:
        st.markdown(f"**job {job.id}**: {job.status.value}")
        if job.scheduler_job:
            st.text(_scheduler(job))
        if job.run_id:
            st.page_link(
                PATHS["run"],
                label=f"run {job.run_id}" + (f" ({run.status})" if run else ""),
                query_params={"run": job.run_id},
                icon=":material/description:",
            )
    # Once its run has finished, the job is only exiting: there is nothing left to cancel.
    finished = run is not None and run.status == RunStatus.FINISHED
    if (
        not job.status.is_terminal()
        and not finished
        and cols[1].button("Cancel job", key=f"cancel-{job.id}")
    ):
        if through_service(lambda c: c.cancel(job.id)) is not None:
            st.toast(f"job {job.id}: cancel requested")
    if job.message:
        st.code(job.message, language=None, wrap_lines=True)
    st.text("log (last 40 lines)")
    st.code(tail(job.log_path, 40) or "(no output yet)", language=None, wrap_lines=True)


def _scheduler(job) -> str | None:
    """ "slurm 17: PENDING (Resources)": the batch job of the job's current attempt."""
    if not job.scheduler_job:
        return None
    return f"{job.scheduler_job}: {job.scheduler_state or 'submitted'}"


def _listed(job_id: int, ids: list[int]) -> int:
    if job_id not in ids:
        raise ValueError(job_id)
    return job_id


live()
