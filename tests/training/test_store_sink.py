"""Rank 0's store writer: the run is its own; the job that launched it is the service's."""

from __future__ import annotations

from db.store import Store
from training.run.metrics import RunInfo
from training.run.store_sink import StoreSink
from training.schema import parse_config


def test_the_run_names_its_job_but_the_job_row_is_left_to_the_service(easgd_home, monkeypatch):
    store = Store()
    store.init()
    config = parse_config({}).to_dict()
    job = store.create_job(config=config, workers=2)
    before = store.get_job(job.id).to_dict()
    monkeypatch.setenv("EASGD_JOB_ID", str(job.id))
    sink = StoreSink(store, heartbeat_seconds=60)
    sink.start(RunInfo("r-elsewhere", str(easgd_home / "x"), None, config, 2, 1, "cli"))
    sink.finish("finished")
    assert store.get_run("r-elsewhere").job_id == job.id
    # The supervisor sets the job's run when it claims the job; training never writes jobs.
    assert store.get_job(job.id).to_dict() == before
