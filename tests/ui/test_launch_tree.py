"""The Launch page with Tree EASGD: its form shows the tree's fields from the schema, refuses a
group size that does not divide the workers beside the field, and launches a job that finishes."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.support import Service
from tests.ui.pages import finished_run, launch, open_app, small_job_form
from training.schema.algorithms import REGISTRY


def _tree_form(at: AppTest, workers: int) -> None:
    at.selectbox(key="form.optimizer.algorithm").set_value("tree_easgd").run()
    at.number_input(key="form.resources.workers").set_value(workers).run()


def test_the_form_shows_the_tree_fields(ui_store):
    at = open_app("launch")
    _tree_form(at, 4)
    keys = {w.key for w in at.number_input}
    tree = {"form.optimizer.group_size", "form.optimizer.tau_root", "form.optimizer.beta_root"}
    assert tree <= keys and "form.optimizer.alpha" not in keys
    assert REGISTRY["tree_easgd"].description in [c.value for c in at.caption]
    tau_root = at.number_input(key="form.optimizer.tau_root")
    assert tau_root.value == 10 and "root center" in tau_root.help
    assert at.number_input(key="form.optimizer.group_size").value is None  # one host's ranks
    at.number_input(key="form.optimizer.group_size").set_value(3).run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "3 does not divide resources.workers (4)" in errors[0], errors
    assert next(b for b in at.button if b.label == "Launch").disabled
    at.number_input(key="form.optimizer.group_size").set_value(2).run()
    assert not at.error
    assert not next(b for b in at.button if b.label == "Launch").disabled
    # Another algorithm hides them again.
    at.selectbox(key="form.optimizer.algorithm").set_value("easgd").run()
    assert not tree & {w.key for w in at.number_input}


@pytest.mark.service
def test_a_tree_job_launched_from_the_page_finishes(ui_store, easgd_home, monkeypatch):
    service = Service(easgd_home, slots=4).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    try:
        at = small_job_form()
        at.number_input(key="form.training.epochs").set_value(1.0).run()
        _tree_form(at, 4)
        at.number_input(key="form.optimizer.group_size").set_value(2).run()
        at.number_input(key="form.optimizer.tau_root").set_value(8).run()
        job = launch(at, ui_store)
        assert job.workers == 4 and job.config["optimizer"]["group_size"] == 2
        run = finished_run(service, ui_store, job)
        assert run.params["optimizer.algorithm"] == "tree_easgd"
        assert str(run.params["optimizer.group_size"]) == "2"  # the store keeps text
        assert run.status == "finished"
    finally:
        service.stop()
