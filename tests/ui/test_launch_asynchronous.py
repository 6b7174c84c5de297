"""The Launch page with the center server's options: asynchronous EAMSGD's checkbox and the
backup workers of synchronous SGD come from the schema, and an asynchronous job launched from the
page runs through the service and records its staleness."""

from __future__ import annotations

import pytest

from tests.support import Service
from tests.ui.pages import finished_run, launch, open_app, small_job_form


def test_the_form_offers_what_each_algorithm_has(ui_store):
    at = open_app("launch")
    at.selectbox(key="form.optimizer.algorithm").set_value("eamsgd").run()
    box = at.checkbox(key="form.optimizer.asynchronous")
    assert box.value is False and "center server" in box.help
    assert "form.optimizer.backup_workers" not in {w.key for w in at.number_input}
    at.selectbox(key="form.optimizer.algorithm").set_value("sync").run()
    assert "form.optimizer.asynchronous" not in {w.key for w in at.checkbox}
    backup = at.number_input(key="form.optimizer.backup_workers")
    backup.set_value(2).run()  # of the default 2 workers: none would count
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "leave no gradient to apply" in errors[0], errors
    assert next(b for b in at.button if b.label == "Launch").disabled


@pytest.mark.service
def test_an_asynchronous_job_launched_from_the_page_finishes(ui_store, easgd_home, monkeypatch):
    service = Service(easgd_home).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    try:
        at = small_job_form()
        at.number_input(key="form.training.epochs").set_value(1.0).run()
        at.selectbox(key="form.optimizer.algorithm").set_value("eamsgd").run()
        at.checkbox(key="form.optimizer.asynchronous").check().run()
        job = launch(at, ui_store)
        assert job.config["optimizer"]["asynchronous"] is True
        run = finished_run(service, ui_store, job)
        assert str(run.params["optimizer.asynchronous"]).lower() == "true"
        assert run.status == "finished"
        assert {"staleness", "wait_seconds", "center_accuracy"} <= set(run.metrics)
    finally:
        service.stop()
