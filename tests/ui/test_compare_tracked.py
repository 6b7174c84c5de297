"""A run your own script recorded and a run of the training program, side by side on the
Compare page: the Keras example and tests/training/tiny.yaml, both under real horovodrun."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT, horovodrun
from tests.ui.pages import open_app
from ui.navigation import PATHS

CONVNET = ROOT / "examples" / "keras-mnist-convnet"


@pytest.mark.horovod
def test_a_tracked_script_is_drawn_beside_a_built_in_run(ui_store, tmp_path):
    data = tmp_path / "mnist.npz"
    subprocess.run([sys.executable, str(CONVNET / "make_data.py"), str(data)], check=True)
    for argv in (
        [str(CONVNET / "train.py"), "--data", str(data), "--epochs", "1"],
        ["-m", "training", "--config", "tests/training/tiny.yaml", "--out", str(tmp_path / "r")]
        + ["--set", "training.max_steps=30"],
    ):
        done = horovodrun(2, argv)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = ui_store.list_runs()
    builtin = next(r for r in runs if r.name == "tiny")
    script = next(r for r in runs if r is not builtin)
    assert (script.source, builtin.source) == ("shell", "shell")
    assert ui_store.get_run(script.id).params["optimizer.algorithm"] == "eamsgd"

    at = open_app()
    at.session_state["runs.table"] = {"selection": {"rows": [0, 1]}}
    at.button(key="runs.compare").click().run()
    at.switch_page(PATHS["compare"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="compare.metrics").value == ["center_accuracy"]
    charts = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    (chart,) = [c for c in charts if c.get("y_label") == "center_accuracy"]
    series = {s["label"]: s for s in chart["series"]}
    assert len(series) == 2, list(series)
    # Labelled by what differs (both are EAMSGD), each ending with its run id.
    assert {label.rsplit("(", 1)[-1] for label in series} == {f"{builtin.id})", f"{script.id})"}
    assert min(len(s["y"]) for s in series.values()) > 1  # curves, not single points
    at.selectbox(key="compare.x").set_value("bytes_sent").run()
    assert not at.exception
