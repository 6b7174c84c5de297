"""The Sweeps page with streamlit's AppTest on a real SQLite store, and what it draws
(ui/sweep_view.py). The sweep here is recorded as the service would record one."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from db.store import Store
from service.sweeps.spec import validate_sweep
from tests.support import ROOT
from ui.navigation import PATHS
from ui.sweep_view import best_so_far_chart, parallel_chart, trials_frame

SWEEP = yaml.safe_load((ROOT / "configs" / "sweep-digits-random.yaml").read_text())
BASE = yaml.safe_load((ROOT / "configs" / "mlp-digits-easgd.yaml").read_text())
# (state, learning rate, tau, final center accuracy)
TRIALS = [
    ("succeeded", 0.3, 4, 0.95),
    ("stopped_early", 0.001, 16, 0.2),
    ("succeeded", 0.1, 1, 0.97),
    ("succeeded", 0.05, 2, 0.93),
    ("failed", 0.2, 8, None),
    ("running", 0.02, 4, None),
]


def _record(store: Store, name: str = "digits-random"):
    valid = validate_sweep({**SWEEP, "base": None, "name": name}, BASE)
    sweep = store.create_sweep(
        name=name,
        method="random",
        metric="center_accuracy",
        goal="maximize",
        seed=valid.seed,
        run_cap=valid.run_cap,
        concurrency=2,
        spec=valid.stored_spec(),
        base_config=BASE,
        source="cli",
    )
    for n, (state, lr, tau, value) in enumerate(TRIALS):
        params = {"optimizer.learning_rate": lr, "optimizer.tau": tau}
        job = {"config": {}, "workers": 2, "name": f"t{n}", "source": "cli"}
        t = store.add_trial(sweep.id, n, params, job=job)
        store.transition_trial(t.id, "running", run_id=f"job-{t.job_id}")
        if state != "running":
            store.transition_trial(t.id, state, value=value, message=f"why {n}")
    return store.get_sweep(sweep.id)


def test_the_parallel_coordinates_put_each_trial_on_every_axis(ui_store):
    sweep = _record(ui_store)
    chart = parallel_chart(sweep)
    assert [(a["label"], a["kind"]) for a in chart["axes"]] == [
        ("optimizer.learning_rate", "log"),
        ("optimizer.tau", "category"),
        ("center_accuracy", "number"),
    ]
    assert chart["axes"][0]["min"] == 1e-4 and chart["axes"][0]["max"] == 0.5
    assert chart["axes"][1]["ticks"] == ["1", "2", "4", "8", "16"]
    assert (chart["axes"][2]["min"], chart["axes"][2]["max"]) == (0.2, 0.97)
    lines = {line["label"]: line for line in chart["lines"]}
    assert set(lines) == {"trial 0", "trial 1", "trial 2", "trial 3"}  # those with a metric
    assert lines["trial 1"]["values"] == [0.001, 4, 0.2]  # tau 16: the fifth tick
    assert lines["trial 1"]["state"] == "stopped_early"
    assert [n for n, line in lines.items() if line["best"]] == ["trial 2"]


def test_the_best_so_far_takes_succeeded_trials_in_order(ui_store):
    chart = best_so_far_chart(_record(ui_store))
    trial, best = chart["series"]
    assert trial["x"] == [0, 2, 3] and trial["y"] == [0.95, 0.97, 0.93]
    assert best["y"] == [0.95, 0.97, 0.97]
    frame = trials_frame(_record(ui_store, "again"))
    assert list(frame.columns) == [
        "trial", "state", "optimizer.learning_rate", "optimizer.tau", "center_accuracy",
        "job", "run", "note",
    ]  # fmt: skip
    assert frame["state"].tolist() == [t[0] for t in TRIALS]
    assert math.isnan(frame["center_accuracy"].iloc[4])


def test_the_page_shows_the_sweep_in_its_address(ui_store):
    first = _record(ui_store, "first")
    second = _record(ui_store, "second")
    at = AppTest.from_file("ui/app.py", default_timeout=60)
    at.query_params["sweep"] = str(first.id)
    at.run()
    at.switch_page(PATHS["sweeps"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Sweeps"
    assert at.selectbox(key="sweeps.id").value == first.id
    assert any("**Best: trial 2**" in m.value for m in at.markdown)
    payloads = [json.loads(c.proto.json) for c in at.get("bidi_component")]
    (parallel,) = [p for p in payloads if "axes" in p]
    assert len(parallel["lines"]) == 4
    (table,) = at.dataframe
    assert len(table.value) == len(TRIALS)
    assert any(b.label == "Stop sweep" for b in at.button)  # it is still running
    at.selectbox(key="sweeps.id").set_value(second.id).run()
    assert at.query_params["sweep"] == [str(second.id)]


@pytest.mark.parametrize("address", ["abc", "999", "9" * 5000, "-1"])
def test_an_address_naming_no_sweep_is_ignored(ui_store, address):
    newest = _record(ui_store)
    at = AppTest.from_file("ui/app.py", default_timeout=60)
    at.query_params["sweep"] = address
    at.run()
    at.switch_page(PATHS["sweeps"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="sweeps.id").value == newest.id


def test_no_sweep_yet_teaches_the_command(ui_store):
    at = AppTest.from_file("ui/app.py", default_timeout=60).run()
    at.switch_page(PATHS["sweeps"]).run()
    assert not at.exception
    assert "easgd sweep create configs/sweep-digits-random.yaml" in at.info[0].value
