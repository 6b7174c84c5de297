"""Every page with streamlit's AppTest, driving widgets against a real SQLite store (and, for
Launch, a real job service)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from db.store import Store
from tests.support import Service
from tests.ui.pages import finished_run, launch, open_app, small_job_form
from training.schema.algorithms import REGISTRY
from ui.navigation import PATHS


def _seed(store: Store) -> None:
    for run_id, algo, tau, accs in (
        ("r-eam", "eamsgd", 10, (0.5, 0.97)),
        ("r-sync", "sync", 1, (0.6, 0.96)),
    ):
        store.create_run(
            run_id,
            name=run_id,
            params={"optimizer.algorithm": algo, "optimizer.tau": tau, "seed": 1},
            workers=2,
            total_steps=20,
        )
        rows = []
        for step in range(21):
            rows += [
                ("train_loss", step, step * 0.5, 2.0 / (step + 1)),
                ("bytes_sent", step, step * 0.5, 1000.0 * step / tau),
                ("epoch", step, step * 0.5, step / 10),
            ]
        rows += [("center_accuracy", 10, 5.0, accs[0]), ("center_accuracy", 20, 10.0, accs[1])]
        store.log_metrics(run_id, rows)
        store.add_event(run_id, "finished", "done", 20)
        store.finish_run(run_id, "finished")


def _tick(at: AppTest, *run_ids: str) -> AppTest:
    """Tick these runs in the Runs table, as its tick boxes would, for the next run of the page
    (AppTest sends no table selection of its own: a browser sends it on every rerun)."""
    ids = list(at.dataframe[0].value["run"])
    at.session_state["runs.table"] = {"selection": {"rows": [ids.index(i) for i in run_ids]}}
    return at


def _components(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.json) for c in at.get("bidi_component")]


def _charts(at: AppTest) -> list[dict]:
    """The payloads of the curve charts on the page, as the browser receives them."""
    return [c for c in _components(at) if "series" in c or "charts" in c]


def _parallel(at: AppTest) -> list[dict]:
    return [c for c in _components(at) if "axes" in c]


def _text(at: AppTest) -> str:
    parts = (
        [m.value for m in at.markdown]
        + [i.value for i in at.info]
        + [w.value for w in at.warning]
        + [e.value for e in at.error]
        + [c.value for c in at.caption]
    )
    return "\n".join(str(p) for p in parts)


def test_empty_states_teach(ui_store):
    for page in (None, "compare", "run"):
        at = open_app(page)
        assert "No runs yet" in _text(at) and "horovodrun" in _text(at)
    jobs = open_app("jobs")
    assert "No jobs yet" in _text(jobs) and "easgd submit" in _text(jobs)


def test_the_jobs_page_shows_a_batch_schedulers_job_and_why_it_waits(ui_store):
    """A Slurm service's jobs: the table gains a scheduler column, the job's detail a line."""
    plain = ui_store.create_job(config={"seed": 1}, workers=1, name="here")
    waits = ui_store.create_job(config={"seed": 2}, workers=2, name="on-slurm")
    ui_store.update_job(waits.id, scheduler_job="slurm 17", scheduler_state="PENDING (Resources)")
    jobs = open_app("jobs")
    table = jobs.dataframe[0].value
    shown = dict(zip(table["id"], table["scheduler"]))
    assert shown[waits.id] == "slurm 17: PENDING (Resources)" and shown[plain.id] is None
    jobs.selectbox(key="jobs.selected").set_value(waits.id).run()
    assert "slurm 17: PENDING (Resources)" in [t.value for t in jobs.text]
    only_here = ui_store.update_job(waits.id, scheduler_job=None, scheduler_state=None)
    assert only_here.scheduler_job is None
    assert "scheduler" not in open_app("jobs").dataframe[0].value.columns


def test_runs_table_filter_and_bad_filter(ui_store):
    _seed(ui_store)
    at = open_app()
    assert at.title[0].value == "Runs"
    table = at.dataframe[0].value
    assert set(table["run"]) == {"r-eam", "r-sync"}
    # Differs between the runs: EAMSGD's momentum (0.99) and sync's (none); not their tau, 10
    # for EAMSGD and, unused, the default 10 for sync.
    assert "optimizer.momentum" in table.columns and "optimizer.tau" not in table.columns
    at.text_input(key="runs.filter").set_value("params.optimizer.algorithm = 'sync'").run()
    assert list(at.dataframe[0].value["run"]) == ["r-sync"]
    at.text_input(key="runs.filter").set_value("status = 'x'; DROP TABLE runs").run()
    assert any("Invalid filter" in e.value and "position" in e.value for e in at.error)
    assert len(ui_store.list_runs()) == 2


def test_compare_draws_curves_and_summaries(ui_store):
    _seed(ui_store)
    at = open_app()
    _tick(at, "r-eam", "r-sync").run()
    assert at.button(key="runs.compare").label == "Compare selected (2)"
    assert at.button(key="runs.open").disabled  # opens exactly one run
    _tick(at, "r-eam", "r-sync").button(key="runs.compare").click().run()
    assert not at.exception
    assert at.title[0].value == "Compare runs"
    at.switch_page(PATHS["compare"]).run()  # AppTest reruns the default page otherwise
    # In the Runs table's order, newest first.
    assert at.multiselect(key="compare.runs").value == ["r-sync", "r-eam"]
    assert at.multiselect(key="compare.metrics").value == ["center_accuracy"]
    (chart,) = _charts(at)
    assert chart["y_label"] == "center_accuracy" and chart["x_label"] == "Step"
    # Labelled by what differs, the algorithm first; what the algorithm implies (EAMSGD's
    # momentum) is left to the table below.
    sync, eam = "sync (r-sync)", "eamsgd (r-eam)"
    assert [(c["label"], c["x"], c["y"]) for c in chart["series"]] == [
        (sync, [10.0, 20.0], [0.6, 0.96]),
        (eam, [10.0, 20.0], [0.5, 0.97]),
    ]
    # Did it pay off: the default target is the weakest run's best (0.96), which both first
    # reach at step 20, at 10 s of wall time (no training seconds recorded) and 1000 bytes a
    # step over tau: 20000 for sync, the baseline, 2000 for EAMSGD.
    costs = at.dataframe[0].value
    assert list(costs["run"]) == [f"{sync} (baseline)", eam]
    assert list(costs["reached at step"]) == [20, 20]
    assert list(costs["time (s)"]) == [10.0, 10.0]
    assert list(costs["clock"]) == ["wall", "wall"]
    assert list(costs["bytes sent"]) == [20000.0, 2000.0]
    assert list(costs["bytes ×"]) == [1.0, pytest.approx(0.1)]
    assert (
        f"{eam} reached 0.96 with 0.1x {sync}'s bytes, and about the same wall seconds and "
        "steps." in _text(at)
    )
    summary = at.dataframe[1].value
    assert dict(zip(summary["run"], summary["best"])) == {eam: 0.97, sync: 0.96}
    params = at.dataframe[2].value
    assert list(params.index) == [
        "optimizer.algorithm",
        "optimizer.beta",
        "optimizer.inner",
        "optimizer.momentum",
    ]
    at.number_input(key="compare.target").set_value(0.97).run()
    assert at.query_params["target"] == ["0.97"]  # a shared link keeps the target
    assert "baseline" not in at.query_params and "label" not in at.query_params  # defaults
    assert f"{sync} (the baseline) did not reach 0.97" not in _text(at)
    assert f"The baseline {sync} did not reach 0.97 (its best: 0.96)" in _text(at)
    at.number_input(key="compare.target").set_value(None).run()
    at.selectbox(key="compare.x").set_value("bytes_sent").run()
    at.slider(key="compare.smoothing").set_value(0.6).run()
    at.toggle(key="compare.log").set_value(True).run()
    assert not at.exception
    (chart,) = _charts(at)
    assert chart["x_kind"] == "bytes" and chart["log"] is True
    # bytes sent at steps 10 and 20: 1000 * step / tau, for tau 10 and 1
    assert [c["x"] for c in chart["series"]] == [[10000.0, 20000.0], [1000.0, 2000.0]]
    # smoothed (0.6, debiased): the second point lies between the two raw values
    eam = chart["series"][1]["y"]
    assert eam[0] == pytest.approx(0.5) and 0.5 < eam[1] < 0.97
    assert at.get("download_button")


def test_run_page_and_clone_into_launch(ui_store):
    _seed(ui_store)
    at = open_app()
    _tick(at, "r-eam").run()
    _tick(at, "r-eam").button(key="runs.open").click().run()
    assert at.title[0].value == "Run"
    at.switch_page(PATHS["run"]).run()  # AppTest reruns the default page otherwise
    assert at.selectbox(key="run.id").value == "r-eam"
    assert at.metric[0].value == "finished"
    assert at.metric[2].value == "0.9700"
    charts = {c["y_label"]: c for c in _charts(at)}
    assert set(charts) == {"center_accuracy", "train_loss", "bytes_sent"}
    assert charts["train_loss"]["series"][0]["y"][-1] == pytest.approx(2.0 / 21)
    next(b for b in at.button if b.label == "Clone into the Launch form").click().run()
    assert at.title[0].value == "Launch a training job"
    assert at.number_input(key="form.optimizer.tau").value == 10
    assert at.selectbox(key="form.optimizer.algorithm").value == "eamsgd"


def test_launch_form_follows_the_algorithm_and_shows_errors(ui_store):
    at = open_app("launch")
    keys = {w.key for w in at.number_input}
    assert {"form.optimizer.tau", "form.optimizer.beta", "form.optimizer.alpha"} <= keys
    tau = at.number_input(key="form.optimizer.tau")
    assert tau.value == 10 and "Communication period" in tau.help and "range: >= 1" in tau.help
    assert REGISTRY["eamsgd"].description in [c.value for c in at.caption]
    at.selectbox(key="form.optimizer.algorithm").set_value("sync").run()
    keys = {w.key for w in at.number_input}
    assert "form.optimizer.tau" not in keys and "form.optimizer.beta" not in keys
    assert REGISTRY["sync"].description in [c.value for c in at.caption]
    at.selectbox(key="form.optimizer.algorithm").set_value("easgd").run()
    at.number_input(key="form.optimizer.tau").set_value(0).run()
    assert [e.value for e in at.error] == [
        "tau: input should be greater than or equal to 1 (received: 0)"
    ]
    launch = next(b for b in at.button if b.label == "Launch")
    assert launch.disabled
    at.number_input(key="form.optimizer.tau").set_value(4).run()
    at.number_input(key="form.optimizer.alpha").set_value(1.5).run()
    assert any("stability region" in w.value for w in at.warning)
    assert not next(b for b in at.button if b.label == "Launch").disabled


def test_yaml_editor_validates_the_same_way(ui_store):
    at = open_app("launch")
    at.segmented_control(key="form.mode").set_value("YAML").run()
    at.text_area(key="form.yaml").set_value("optimizer:\n  beta: 3\n").run()
    assert any("optimizer.beta" in e.value and "received: 3" in e.value for e in at.error)
    at.text_area(key="form.yaml").set_value("optimizer:\n  tau: 3\n  algorithm: easgd\n").run()
    assert not at.error
    next(b for b in at.button if b.label == "Edit this in the form").click().run()
    assert at.number_input(key="form.optimizer.tau").value == 3


def test_launch_form_shows_the_large_batch_fields_where_they_apply(ui_store):
    at = open_app("launch")
    scaling = at.selectbox(key="form.optimizer.lr_scaling")
    assert scaling.value == "none" and list(scaling.options) == ["none", "linear", "sqrt"]
    assert at.number_input(key="form.optimizer.warmup_steps").value == 0
    assert "form.optimizer.lars_eta" not in {w.key for w in at.number_input}
    at.selectbox(key="form.optimizer.algorithm").set_value("sync").run()
    at.selectbox(key="form.optimizer.inner").set_value("lars").run()
    eta = at.number_input(key="form.optimizer.lars_eta")
    assert eta.value == 0.001 and "trust coefficient" in eta.help and "range: > 0" in eta.help
    assert at.number_input(key="form.optimizer.lars_weight_decay").value == 0.0
    at.number_input(key="form.optimizer.lars_eta").set_value(2.0).run()
    assert [e.value for e in at.error] == [
        "LARS trust coefficient (eta): input should be less than or equal to 1 (received: 2.0)"
    ]
    at.number_input(key="form.optimizer.lars_eta").set_value(0.01).run()
    at.number_input(key="form.optimizer.warmup_steps").set_value(5).run()
    assert any("optimizer.warmup_steps: no effect" in w.value for w in at.warning)
    at.selectbox(key="form.optimizer.lr_scaling").set_value("linear").run()
    assert not at.error and not any("warmup_steps" in w.value for w in at.warning)
    at.selectbox(key="form.optimizer.inner").set_value("sgd").run()
    assert "form.optimizer.lars_eta" not in {w.key for w in at.number_input}


@pytest.mark.service
def test_launch_submits_through_the_service_and_jobs_page_shows_it(
    ui_store, easgd_home, monkeypatch
):
    service = Service(easgd_home, slots=2).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    try:
        at = small_job_form()
        at.number_input(key="form.training.epochs").set_value(1.0).run()
        next(b for b in at.button if b.label == "Launch").click().run()
        assert not at.exception
        assert any("queued" in s.value for s in at.success), [e.value for e in at.error]
        (job,) = ui_store.list_jobs()
        assert job.source == "ui" and job.workers == 2
        jobs = open_app("jobs")
        assert list(jobs.dataframe[0].value["id"]) == [job.id]
        service.wait(job.id, {"succeeded", "failed"})
        assert ui_store.get_job(job.id).status.value == "succeeded"
    finally:
        service.stop()


def test_the_launch_form_shows_the_topology_and_keeps_a_matrix(ui_store):
    at = open_app("launch")
    assert "form.optimizer.topology" not in {w.key for w in at.text_input}
    at.selectbox(key="form.optimizer.algorithm").set_value("cdsgd").run()
    topology = at.text_input(key="form.optimizer.topology")
    assert topology.value == "ring" and "Metropolis-Hastings" in topology.help
    assert REGISTRY["cdsgd"].description in [c.value for c in at.caption]
    assert "form.optimizer.tau" not in {w.key for w in at.number_input}
    topology.set_value("[[0.5, 0.5], [0.6, 0.4]]").run()
    assert [e.value for e in at.error] == [
        "topology: column 0 sums to 1.1, not 1: a mixing matrix must be doubly stochastic "
        "(every row and column summing to 1, within 1e-06) (received: [[0.5, 0.5], [0.6, 0.4]])"
    ]
    at.text_input(key="form.optimizer.topology").set_value("[[0.5, 0.5], [0.5, 0.5]]").run()
    assert not at.error
    # Through the YAML editor and back, the matrix stays a matrix.
    at.segmented_control(key="form.mode").set_value("YAML").run()
    assert "- - 0.5" in at.text_area(key="form.yaml").value
    next(b for b in at.button if b.label == "Edit this in the form").click().run()
    assert at.text_input(key="form.optimizer.topology").value == "[[0.5, 0.5], [0.5, 0.5]]"


@pytest.mark.service
def test_cdsgd_launched_from_the_form_runs_on_three_workers(ui_store, easgd_home, monkeypatch):
    service = Service(easgd_home, slots=3).start()
    monkeypatch.setenv("EASGD_API_URL", service.url)
    try:
        at = small_job_form()
        at.selectbox(key="form.optimizer.algorithm").set_value("cdsgd").run()
        at.number_input(key="form.optimizer.learning_rate").set_value(0.1).run()
        # A short run: 30 steps on 3 workers.
        at.number_input(key="form.training.max_steps").set_value(30).run()
        at.number_input(key="form.resources.workers").set_value(3).run()
        job = launch(at, ui_store)
        assert job.workers == 3 and job.config["optimizer"]["topology"] == "ring"
        metrics = finished_run(service, ui_store, job).metrics
        assert metrics["consensus"].value > 0 and metrics["center_accuracy"].value > 0.3
    finally:
        service.stop()


def test_every_page_names_the_store_it_shows(ui_store):
    """As `easgd up` and `easgd runs list` name it: a user with two stores sees which this is."""
    for page in (None, "launch", "jobs", "compare"):
        at = open_app(page)
        captions = [c.value for c in at.sidebar.caption]
        assert f"Store: `{ui_store.display_url}`" in captions, captions
