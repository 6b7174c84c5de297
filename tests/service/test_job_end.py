"""Where a job's end meets a request: a cancel once the job's run has finished (the job is only
exiting) is refused, and a cancel that its run outran ends the job as succeeded; and the check a
form makes before it queues a job answers what a submission would, with nothing queued."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from db.entities import JobStatus
from db.errors import InvalidTransition
from service.api import create_app
from service.settings import ServiceSettings
from tests.service.test_supervisor import CONFIG, FakeProcesses


@pytest.fixture
def settings(easgd_home) -> ServiceSettings:
    return ServiceSettings(hosts={"localhost": 2}, grace_seconds=0.1)


def _running_with_its_run(store, settings):
    fake = FakeProcesses()
    sup = fake.supervisor(store, settings)
    sup.reconcile()
    job = store.create_job(config=CONFIG, workers=2)
    sup.tick()
    run_id = f"job-{job.id}"
    store.create_run(run_id, params={}, job_id=job.id, source="api")
    return fake, sup, store.get_job(job.id), run_id


def test_a_cancel_after_the_run_finished_is_refused_and_the_job_succeeds(store, settings):
    fake, sup, job, run_id = _running_with_its_run(store, settings)
    store.finish_run(run_id, "finished")
    with pytest.raises(InvalidTransition, match=r"has finished.*nothing left to cancel"):
        sup.cancel(job.id)
    assert fake.terminated == [] and not store.get_job(job.id).cancel_requested
    fake.popens[job.pid].returncode = 0
    sup.tick()
    assert store.get_job(job.id).status is JobStatus.SUCCEEDED
    assert store.get_run(run_id).status == "finished"


def test_a_cancel_its_run_outran_ends_the_job_as_succeeded(store, settings):
    fake, sup, job, run_id = _running_with_its_run(store, settings)
    store.update_job(job.id, cancel_requested=True)  # accepted while the run still ran
    store.finish_run(run_id, "finished")  # then rank 0 finished before the ranks were ended
    sup.tick()
    done = store.get_job(job.id)
    assert done.status is JobStatus.SUCCEEDED and "finished before the cancel" in done.message
    assert store.get_run(run_id).status == "finished"


def test_a_cancel_while_the_run_runs_ends_job_and_run_as_cancelled(store, settings):
    fake, sup, job, run_id = _running_with_its_run(store, settings)
    assert sup.cancel(job.id).status is JobStatus.CANCELLED
    assert store.get_run(run_id).status == "cancelled"


def test_the_check_before_queueing_answers_as_a_submission_would(easgd_home):
    settings = ServiceSettings(
        hosts={"localhost": 2}, db_url=f"sqlite:///{easgd_home / 'easgd.db'}"
    )
    with TestClient(create_app(settings, start_supervisor=False)) as client:
        over = {"config": {"resources": {"workers": 3}}}
        for path in ("/jobs:check", "/jobs"):
            refused = client.post(path, json=over)
            assert refused.status_code == 422, refused.text
            (problem,) = refused.json()["detail"]
            assert problem["field"] == "resources.workers"
            assert "needs 3 slots" in problem["msg"] and "(2 slots)" in problem["msg"]
            assert "--slots" in problem["msg"]
        warned = client.post("/jobs:check", json={"config": {"optimizer": {"alpha": 1.5}}})
        assert warned.status_code == 200
        assert any("stability region" in w for w in warned.json()["warnings"])
        bad = client.post("/jobs:check", json={"config": {"optimizer": {"tau": 0}}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "optimizer.tau"
        assert client.get("/jobs").json() == []  # a check queues nothing
