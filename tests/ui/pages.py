"""Opening the app's pages in Streamlit's test harness, for the page tests."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.navigation import PATHS

APP = "ui/app.py"


def open_app(page: str | None = None) -> AppTest:
    """The app, switched to `page` (a key of ui.navigation's pages), with no exception on the
    way."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(PATHS[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def small_job_form() -> AppTest:
    """The Launch page set to a job that trains in seconds: scikit-learn's digits, an MLP."""
    at = open_app("launch")
    at.selectbox(key="form.data.dataset").set_value("digits").run()
    at.selectbox(key="form.model.name").set_value("mlp").run()
    return at


def launch(at: AppTest, store):
    """Press Launch on a filled form: the page says the job is queued; the one job queued."""
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("queued" in s.value for s in at.success), [e.value for e in at.error]
    (job,) = store.list_jobs()
    return job


def finished_run(service, store, job, timeout: float = 400):
    """Wait for a launched job to succeed; its run, as the store has it."""
    done = service.wait(job.id, {"succeeded", "failed"}, timeout=timeout)
    assert done["status"] == "succeeded", done
    return store.get_run(store.get_job(job.id).run_id)


def seed_system_run(store, run_dir: Path) -> None:
    """A finished 2-rank run named after its directory, with its directory, center accuracy and
    each rank's CPU and memory at three evaluations (rank 1 a little above rank 0)."""
    run_id = run_dir.name
    (run_dir / "checkpoints").mkdir(parents=True)
    store.create_run(run_id, name=run_id, params={"optimizer.algorithm": "eamsgd"}, workers=2,
                     total_steps=20, run_dir=str(run_dir))  # fmt: skip
    rows = []
    for step in (0, 10, 20):
        rows.append(("center_accuracy", step, step / 2, 0.5 + step / 100))
        for rank in (0, 1):
            rows.append((f"system/rank_{rank}/cpu_percent", step, step / 2, 90.0 + rank))
            rows.append((f"system/rank_{rank}/memory_mb", step, step / 2, 700.0 + 10 * rank))
    store.log_metrics(run_id, rows)
    store.finish_run(run_id, "finished")
