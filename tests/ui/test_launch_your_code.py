"""The Launch page with your own code: the "Your code" mode runs a script from a working
directory on this machine, and the form takes a model and data by import path with a working
directory; both through the real service and horovodrun, recorded in the store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT, Service
from tests.ui.pages import finished_run, launch, open_app
from ui.navigation import PATHS

CONVNET = ROOT / "examples" / "keras-mnist-convnet"
OWN_MODEL = ROOT / "examples" / "own-model"


def _your_code(at, directory: str, command: str):
    at.segmented_control(key="form.mode").set_value("Your code").run()
    at.text_input(key="code.dir").input(directory).run()
    at.text_input(key="code.command").input(command).run()
    return at


def test_your_code_refuses_a_missing_directory_and_a_broken_command(ui_store, tmp_path):
    at = _your_code(open_app("launch"), str(tmp_path / "nowhere"), "python train.py")
    errors = [e.value for e in at.error]
    assert any("Working directory: not a directory on this machine" in e for e in errors), errors
    assert next(b for b in at.button if b.label == "Launch").disabled
    at.text_input(key="code.dir").input(str(tmp_path)).run()
    at.text_input(key="code.command").input('python train.py --name "unclosed').run()
    errors = [e.value for e in at.error]
    assert errors == [
        "Command: No closing quotation (received: 'python train.py --name \"unclosed')"
    ]
    assert next(b for b in at.button if b.label == "Launch").disabled


@pytest.mark.service
@pytest.mark.horovod
def test_a_script_and_a_model_by_import_path_launched_from_the_page_finish(
    ui_store, easgd_home, tmp_path, monkeypatch
):
    service = Service(easgd_home).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    try:
        _launch_both(service, ui_store, tmp_path)
    finally:
        service.stop()


def _launch_both(ui_service, ui_store, tmp_path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(CONVNET / "train.py", project / "train.py")
    subprocess.run([sys.executable, str(CONVNET / "make_data.py"), str(project / "mnist.npz")],
                   check=True)  # fmt: skip
    at = _your_code(open_app("launch"), str(project), "python train.py --data mnist.npz --epochs 1")
    at.text_input(key="code.name").input("convnet-from-the-page").run()
    assert not at.error, [e.value for e in at.error]
    job = launch(at, ui_store)
    assert job.config["script"]["command"][:2] == ["python", "train.py"]
    assert job.config["code"].startswith("sha256:")
    run = finished_run(ui_service, ui_store, job)
    assert (run.status, run.source, run.name) == ("finished", "ui", "convnet-from-the-page")
    assert {"center_accuracy", "bytes_sent", "train_loss"} <= set(run.metrics)

    at = open_app("launch")
    at.text_input(key="form.model.builder").input("nets:regressor").run()
    at.text_input(key="form.model.loss").input("mean_squared_error").run()
    at.text_input(key="form.model.metrics").input("[mean_absolute_error]").run()
    at.text_input(key="form.model.options").input("{hidden: 16, depth: 1}").run()
    at.text_input(key="form.data.loader").input("tables:diabetes").run()
    at.number_input(key="form.training.epochs").set_value(2.0).run()
    at.number_input(key="form.training.eval_every").set_value(2).run()
    at.text_input(key="form.workdir").input(str(OWN_MODEL)).run()
    assert not at.error, [e.value for e in at.error]
    assert "form.model.name" not in {w.key for w in at.selectbox}
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception and any("queued" in s.value for s in at.success)
    job = max(ui_store.list_jobs(), key=lambda j: j.id)
    run = finished_run(ui_service, ui_store, job)
    assert "center_mean_absolute_error" in run.metrics and "center_accuracy" not in run.metrics
    # The Run page shows the regression's own score, headline and curve.
    at = open_app("run")
    at.selectbox(key="run.id").set_value(run.id).run()
    assert at.metric[2].label == "center mean absolute error", at.metric[2].label
    assert at.metric[2].value == f"{run.metrics['center_mean_absolute_error'].value:.4f}"
    charts = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    labels = {c.get("y_label") for c in charts}
    assert {"center_mean_absolute_error", "train_loss", "bytes_sent"} <= labels, labels
    # And on Compare, beside the script's run, which has no such score.
    at = open_app()
    at.session_state["runs.table"] = {"selection": {"rows": [0, 1]}}
    at.button(key="runs.compare").click().run()
    at.switch_page(PATHS["compare"]).run()
    at.multiselect(key="compare.metrics").set_value(["center_mean_absolute_error"]).run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    (chart,) = [c for c in charts if c.get("y_label") == "center_mean_absolute_error"]
    assert len(chart["series"]) == 1 and len(chart["series"][0]["y"]) > 2, chart["series"]
