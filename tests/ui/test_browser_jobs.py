"""Jobs, Launch, Run and Compare in headless Chromium while real jobs run: Launch refuses up
front a job the service cannot place, the Run and Compare pages follow a running run and stop
once it ended, Cancel ends a job and its run at once, is not offered (and is refused) once the
run finished, log lines wrap, and the job's run is a link to its page.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.ui.chromium import (
    chromium_browser,
    ever_drawn,
    new_page,
    served,
    shot,
    store_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.service, pytest.mark.horovod]

SLOTS = 3
# A job still exiting after its run finished: its root stands in for horovodrun's last moment.
FINISHING_RUN = "finishing"


def _seed_a_job_whose_run_finished(store, home) -> subprocess.Popen:
    root = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"])
    job = store.create_job(
        config={"name": FINISHING_RUN, "resources": {"workers": 1}},
        workers=1,
        name=FINISHING_RUN,
        source="cli",
    )
    log = home / "jobs" / str(job.id) / "job.log"
    log.parent.mkdir(parents=True)
    log.write_text("easgd: finished run finishing\n")
    store.create_run(FINISHING_RUN, name=FINISHING_RUN, params={}, workers=1, total_steps=10)
    store.log_metrics(FINISHING_RUN, [("center_accuracy", 10, 1.0, 0.9)])
    store.finish_run(FINISHING_RUN, "finished")
    store.transition_job(
        job.id, "running", run_id=FINISHING_RUN, log_path=str(log), hosts="localhost:1"
    )
    store.update_job(job.id, pid=root.pid, pid_start_time=psutil.Process(root.pid).create_time())
    return root


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    home = tmp_path_factory.mktemp("jobs") / "home"
    store = store_in(home)
    root = _seed_a_job_whose_run_finished(store, home)
    store.dispose()
    try:
        with served(home, slots=SLOTS) as p:
            yield p
    finally:
        root.kill()
        root.wait()


@pytest.fixture(scope="module")
def browser(product):
    with chromium_browser() as b:
        yield b


def _job(product, job_id: int) -> dict:
    return httpx.get(f"{product.api}/jobs/{job_id}", timeout=30).json()


def _run(product, run_id: str) -> dict | None:
    r = httpx.get(f"{product.api}/runs/{run_id}", timeout=30)
    return r.json() if r.status_code == 200 else None


def _submit(product, *overrides: str, name: str) -> int:
    done = product.easgd(
        "submit", "--quiet", "tests/training/tiny.yaml", "--name", name,
        *[f"--set={o}" for o in overrides],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def _wait(what, timeout: float = 300, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := what():
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what.__doc__ or what}")


def _metric(page, label: str) -> str:
    return (
        page.get_by_test_id("stMetric")
        .filter(has_text=label)
        .get_by_test_id("stMetricValue")
        .inner_text()
    )


def _step(page) -> int:
    return int(_metric(page, "step").split("/")[0])


def _no_horizontal_overflow(page) -> None:
    for code in page.locator("pre").all():
        if code.is_visible():
            wide, shown = code.evaluate("el => [el.scrollWidth, el.clientWidth]")
            assert wide <= shown + 1, code.inner_text()[:200]


def test_launch_refuses_up_front_a_job_the_service_cannot_place(browser, product):
    from playwright.sync_api import expect

    page = new_page(browser, f"{product.ui}/launch")
    expect(page.get_by_role("heading", name="Launch a training job")).to_be_visible()
    workers = page.get_by_label("workers", exact=True)
    workers.fill(str(SLOTS + 1))
    workers.press("Enter")
    page.wait_for_timeout(1500)
    # The scheduler's own rule, beside the field: the capacity, and what to change.
    error = page.get_by_test_id("stAlertContentError").filter(has_text="workers:")
    expect(error).to_contain_text(f"needs {SLOTS + 1} slots")
    expect(error).to_contain_text(f"({SLOTS} slots)")
    expect(error).to_contain_text("lower the workers, or start the service with more --slots")
    expect(page.get_by_role("button", name="Launch", exact=True)).to_be_disabled()
    shot(page, "launch-refuses-a-job-it-cannot-place")
    # The service says the same through its API, and nothing was queued.
    body = {"config": {"resources": {"workers": SLOTS + 1}}}
    refused = httpx.post(f"{product.api}/jobs:check", json=body, timeout=30)
    assert refused.status_code == 422
    assert f"needs {SLOTS + 1} slots" in refused.json()["detail"][0]["msg"]
    assert [j["name"] for j in httpx.get(f"{product.api}/jobs").json()] == [FINISHING_RUN]
    workers.fill(str(SLOTS))
    workers.press("Enter")
    page.wait_for_timeout(1500)
    expect(page.get_by_role("button", name="Launch", exact=True)).to_be_enabled()
    assert page.get_by_test_id("stAlertContentError").count() == 0


def test_cancel_is_neither_offered_nor_accepted_once_the_run_finished(browser, product):
    from playwright.sync_api import expect

    (job,) = [j for j in httpx.get(f"{product.api}/jobs").json() if j["name"] == FINISHING_RUN]
    assert job["status"] == "running"
    page = new_page(browser, f"{product.ui}/jobs?job={job['id']}")
    expect(page.get_by_text(f"job {job['id']}: running")).to_be_visible()
    page.wait_for_timeout(1000)
    assert page.get_by_role("button", name="Cancel job").count() == 0
    expect(page.get_by_role("link", name=f"run {FINISHING_RUN} (finished)")).to_be_visible()
    shot(page, "jobs-no-cancel-once-the-run-finished")
    refused = httpx.post(f"{product.api}/jobs/{job['id']}/cancel", timeout=30)
    assert refused.status_code == 409
    assert "has finished" in refused.json()["detail"]
    cli = product.easgd("jobs", "cancel", str(job["id"]))
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "nothing left to cancel" in cli.stderr
    assert _job(product, job["id"])["status"] == "running"
    assert _run(product, FINISHING_RUN)["status"] == "finished"


def test_run_and_compare_follow_a_running_run_and_cancel_ends_it_at_once(browser, product):
    from playwright.sync_api import expect

    job_id = _submit(product, "training.epochs=400", name="long")
    run_id = f"job-{job_id}"

    def running():
        """its run is running and has taken steps"""
        run = _run(product, run_id)
        return run and run["status"] == "running" and run["last_step"] > 0

    _wait(running, timeout=240)
    run_page = new_page(browser, f"{product.ui}/run?run={run_id}")
    expect(run_page.get_by_text("Live: redrawn every")).to_be_visible()
    compare = new_page(browser, f"{product.ui}/compare?runs={run_id}")
    expect(compare.get_by_text("Live: redrawn every")).to_be_visible()
    first = _step(run_page)
    _wait(lambda: _step(run_page) > first, timeout=60)  # no reload: the page redraws itself
    shot(run_page, "run-page-live")

    def compare_at_step():
        # The "Final and best" table (after "Did it pay off?"'s).
        final = compare.get_by_test_id("stDataFrame").filter(has_text="final").first
        cells = final.locator("[role=gridcell]")
        return int(cells.nth(4).inner_text() or 0)  # run, status, final, best, at step

    seen = compare_at_step()
    _wait(lambda: compare_at_step() > seen, timeout=60)
    shot(compare, "compare-live")

    jobs = new_page(browser, f"{product.ui}/jobs?job={job_id}")
    expect(jobs.get_by_text(f"job {job_id}: running")).to_be_visible()
    _no_horizontal_overflow(jobs)  # the log's long lines (horovodrun's command) wrap
    assert "None" not in ever_drawn(jobs)  # empty cells (no message yet) show a dash
    shot(jobs, "jobs-running")
    jobs.get_by_role("button", name="Cancel job").click()
    _wait(lambda: _job(product, job_id)["status"] == "cancelled", timeout=60)
    # The run was closed with the job, not left running to be found lost later.
    assert _run(product, run_id)["status"] == "cancelled"
    expect(jobs.get_by_text(f"job {job_id}: cancelled")).to_be_visible(timeout=15000)
    shot(jobs, "jobs-cancelled")

    # The open pages see it without a reload, and stop redrawing.
    expect(run_page.get_by_test_id("stMetricValue").first).to_have_text("cancelled", timeout=15000)
    expect(run_page.get_by_text("Live: redrawn every")).to_have_count(0, timeout=15000)
    expect(compare.get_by_text("Live: redrawn every")).to_have_count(0, timeout=15000)
    shot(run_page, "run-page-cancelled")
    time.sleep(8)  # longer than a run's heartbeat may lapse before it reads lost
    assert _run(product, run_id)["status"] == "cancelled"

    # The job's run is a link to its page.
    jobs.get_by_role("link", name=re.compile(rf"run {run_id} ")).click()
    expect(jobs.get_by_role("heading", name="Run", exact=True)).to_be_visible()
    expect(jobs.get_by_role("combobox", name="Run")).to_have_value(re.compile(rf"^{run_id}"))
    jobs.get_by_role("tab", name="Log").click()
    _no_horizontal_overflow(jobs)
    shot(jobs, "run-page-log")
