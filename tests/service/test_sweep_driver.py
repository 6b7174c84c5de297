"""The sweep driver (service/sweeps/driver.py) on a real SQLite store and the supervisor's own
placement rule. Nothing is launched here: each test moves the trials' jobs as the supervisor
would (running, then an end) and records their runs' metrics as rank 0 would; the service test
runs the same through real horovodrun jobs."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from sqlalchemy import text

from db.engine import head_revision
from db.entities import JobStatus, RunStatus, SweepStatus, TrialState
from db.store import Store
from service.settings import ServiceSettings
from service.supervisor import Supervisor
from service.sweeps.driver import MAX_FAILED_PASSES, SweepDriver, optuna_path
from service.sweeps.spec import SweepError
from tests.support import ROOT

BASE = yaml.safe_load((ROOT / "configs" / "mlp-digits-easgd.yaml").read_text())
METRIC = "center_accuracy"


def _spec(**changes) -> dict:
    spec = {
        "name": "t",
        "method": "random",
        "metric": {"name": METRIC, "goal": "maximize"},
        "parameters": {
            "optimizer.learning_rate": {"min": 0.01, "max": 0.5},
            "optimizer.tau": {"values": [1, 2, 4]},
        },
        "run_cap": 4,
        "concurrency": 2,
        "seed": 3,
    }
    return {**spec, **changes}


def _driver(store: Store, slots: int = 4) -> SweepDriver:
    settings = ServiceSettings(hosts={"localhost": slots}, db_url=store.url, data_dirs=[])
    supervisor = Supervisor(store, settings)
    return SweepDriver(
        store,
        settings,
        placement=lambda cfg: supervisor.placement_problem(
            cfg.resources.workers, cfg.resources.gpus_per_worker, cfg.resources.host_map
        ),
        may_schedule=lambda: True,
        wake_scheduler=lambda: None,
    )


def _start(store: Store, job_id: int) -> str:
    run_id = f"job-{job_id}"
    store.transition_job(job_id, JobStatus.RUNNING, run_id=run_id)
    store.create_run(run_id, params={}, job_id=job_id, source="cli")
    return run_id


def _evaluate(store: Store, run_id: str, values: list[float], first: int = 0) -> None:
    rows = [(METRIC, 10 * (first + i + 1), float(i), v) for i, v in enumerate(values)]
    store.log_metrics(run_id, rows)


def _end(store: Store, job_id: int, status: JobStatus = JobStatus.SUCCEEDED) -> None:
    run_status = {JobStatus.FAILED: RunStatus.FAILED, JobStatus.CANCELLED: RunStatus.CANCELLED}
    if status is JobStatus.SUCCEEDED:
        store.finish_run(f"job-{job_id}", "finished")
    store.transition_job(job_id, status, run_status=run_status.get(status), exit_code=0)


def _trials(store: Store, sweep_id: int):
    return store.get_sweep(sweep_id).trials


def test_trials_run_as_jobs_at_most_concurrency_at_once(store):
    driver = _driver(store)
    sweep, warnings = driver.create(_spec(), BASE, "cli")
    assert warnings == [] and sweep.status is SweepStatus.RUNNING
    driver.tick()
    first = _trials(store, sweep.id)
    assert [t.number for t in first] == [0, 1] and all(t.state is TrialState.QUEUED for t in first)
    job = store.get_job(first[0].job_id)
    config = job.config
    assert job.name == "t-trial-0" and job.source == "cli" and job.workers == 2
    assert config["optimizer"]["tau"] == first[0].params["optimizer.tau"]
    assert config["optimizer"]["learning_rate"] == first[0].params["optimizer.learning_rate"]
    assert config["tags"] == {"sweep": str(sweep.id), "trial": "0"}
    assert config["data"]["dataset"] == "digits"  # the base's, frozen with every default
    driver.tick()
    assert len(_trials(store, sweep.id)) == 2  # both slots of the sweep are taken
    for value, t in zip((0.9, 0.7), first):
        run_id = _start(store, t.job_id)
        _evaluate(store, run_id, [0.5, value])
        _end(store, t.job_id)
    driver.tick()
    trials = _trials(store, sweep.id)
    assert [(t.state, t.value) for t in trials[:2]] == [
        (TrialState.SUCCEEDED, 0.9),
        (TrialState.SUCCEEDED, 0.7),
    ]
    assert trials[0].run_id == f"job-{trials[0].job_id}"
    assert [t.state for t in trials[2:]] == [TrialState.QUEUED, TrialState.QUEUED]
    for t in trials[2:]:
        _end(store, t.job_id, JobStatus.CANCELLED)  # a user cancels them
    driver.tick()
    done = store.get_sweep(sweep.id)
    assert done.status is SweepStatus.FINISHED and len(done.trials) == 4
    assert [t.state for t in done.trials[2:]] == [TrialState.CANCELLED] * 2
    assert done.best_trial().number == 0
    assert done.message == "4 trials: 2 cancelled, 2 succeeded; best: trial 0 (center_accuracy 0.9)"


def test_a_restarted_driver_goes_on_with_the_same_draws(tmp_path, monkeypatch):
    def params(db: str, restart: bool):
        monkeypatch.setenv("EASGD_HOME", str(tmp_path / db))
        store = Store(f"sqlite:///{tmp_path / db / 'easgd.db'}")
        store.init()
        driver = _driver(store)
        sweep, _ = driver.create(_spec(concurrency=1), BASE)
        for _ in range(4):
            driver.tick()
            (t,) = [t for t in _trials(store, sweep.id) if not t.state.is_terminal()]
            _start(store, t.job_id)
            _end(store, t.job_id)
            if restart:
                driver = _driver(store)  # the service restarted: nothing kept in memory
        driver.tick()
        got = store.get_sweep(sweep.id)
        assert got.status is SweepStatus.FINISHED
        return [t.params for t in got.trials]

    assert params("a", restart=False) == params("b", restart=True)


def test_poor_trials_are_stopped_early_and_their_jobs_cancelled(store):
    driver = _driver(store)
    rule = {"type": "hyperband", "min_iter": 2, "eta": 3}
    sweep, _ = driver.create(_spec(early_terminate=rule), BASE)
    driver.tick()
    good, poor = _trials(store, sweep.id)
    runs = {t.number: _start(store, t.job_id) for t in (good, poor)}
    _evaluate(store, runs[0], [0.3, 0.8])
    _evaluate(store, runs[1], [0.2])
    driver.tick()
    assert not any(t.message for t in _trials(store, sweep.id))  # not at a bracket yet
    _evaluate(store, runs[1], [0.4], first=1)
    driver.tick()
    trials = _trials(store, sweep.id)
    stopping = trials[1]
    why = "best center_accuracy so far 0.4 is outside the best 1/3 of the 2 trials at iteration 2"
    assert stopping.state is TrialState.RUNNING and stopping.message.startswith(why)
    assert trials[0].state is TrialState.RUNNING and not trials[0].message
    assert store.get_job(stopping.job_id).cancel_requested
    events = [e for e in store.events(runs[1]) if e.kind == "stopped_early"]
    assert [(e.message, e.step) for e in events] == [(f"sweep {sweep.id}: {stopping.message}", 20)]
    driver.tick()
    assert len(_trials(store, sweep.id)) == 2  # its slot frees only when its job has ended
    assert len([e for e in store.events(runs[1]) if e.kind == "stopped_early"]) == 1
    _evaluate(store, runs[1], [0.45], first=2)  # what it did before the cancel reached it
    _end(store, stopping.job_id, JobStatus.CANCELLED)
    driver.tick()
    trials = _trials(store, sweep.id)
    assert trials[1].state is TrialState.STOPPED_EARLY and trials[1].value == 0.45
    assert trials[1].message == stopping.message and len(trials) == 3


def test_a_stop_recorded_without_its_cancel_is_cancelled_on_the_next_pass(store):
    driver = _driver(store)
    sweep, _ = driver.create(_spec(run_cap=2), BASE)
    driver.tick()
    first, _ = _trials(store, sweep.id)
    _start(store, first.job_id)
    driver.tick()
    store.transition_trial(first.id, TrialState.RUNNING, message="judged before a crash")
    assert not store.get_job(first.job_id).cancel_requested
    driver.tick()
    assert store.get_job(first.job_id).cancel_requested
    _end(store, first.job_id, JobStatus.CANCELLED)
    driver.tick()
    assert _trials(store, sweep.id)[0].state is TrialState.STOPPED_EARLY


def test_a_trial_that_ends_before_its_stop_takes_effect_succeeded(store):
    driver = _driver(store)
    rule = {"type": "hyperband", "min_iter": 1, "eta": 3}
    sweep, _ = driver.create(_spec(early_terminate=rule), BASE)
    driver.tick()
    runs = [_start(store, t.job_id) for t in _trials(store, sweep.id)]
    _evaluate(store, runs[0], [0.9])
    _evaluate(store, runs[1], [0.1])
    driver.tick()
    late = _trials(store, sweep.id)[1]
    assert late.message and store.get_job(late.job_id).cancel_requested
    _end(store, late.job_id, JobStatus.SUCCEEDED)
    driver.tick()
    done = _trials(store, sweep.id)[1]
    assert done.state is TrialState.SUCCEEDED and done.value == 0.1
    assert done.message.startswith("it ended before its stop took effect (best center_accuracy")


def test_stopping_a_sweep_cancels_its_trials_then_ends_it(store):
    driver = _driver(store)
    sweep, _ = driver.create(_spec(), BASE)
    driver.tick()
    running, queued = _trials(store, sweep.id)
    _start(store, running.job_id)
    assert driver.stop_sweep(sweep.id).stop_requested
    driver.tick()
    trials = _trials(store, sweep.id)
    assert {t.state for t in trials} == {TrialState.CANCELLED}
    assert all(t.message == "the sweep was stopped" for t in trials)
    assert all(store.get_job(t.job_id).cancel_requested for t in trials)
    assert store.get_sweep(sweep.id).status is SweepStatus.RUNNING  # until the jobs end
    for t in trials:
        _end(store, t.job_id, JobStatus.CANCELLED)
    driver.tick()
    ended = store.get_sweep(sweep.id)
    assert ended.status is SweepStatus.STOPPED and len(ended.trials) == 2
    assert driver.stop_sweep(sweep.id).status is SweepStatus.STOPPED  # as it is


def test_a_trial_whose_configuration_is_refused_fails_and_the_sweep_goes_on(store):
    spec = _spec(method="grid", run_cap=None, parameters={"resources.workers": {"values": [2, 4]}})
    base = {**BASE, "optimizer": {"algorithm": "tree_easgd", "group_size": 2}}
    odd = {**spec, "parameters": {"resources.workers": {"values": [2, 3]}}}
    with pytest.raises(SweepError, match=r"value 3 is refused: optimizer.group_size: 2 does not"):
        _driver(store).create(odd, base)  # every value a trial can have is checked first
    assert store.list_sweeps() == []
    sweep, _ = _driver(store, slots=4).create(spec, BASE)
    smaller = _driver(store, slots=2)  # the service restarted with fewer slots
    smaller.tick()
    placed, refused = _trials(store, sweep.id)
    assert placed.state is TrialState.QUEUED and placed.params == {"resources.workers": 2}
    assert refused.state is TrialState.FAILED and refused.job_id is None
    assert refused.message.startswith("not launched: resources.workers: needs 4 slots")
    _start(store, placed.job_id)
    _end(store, placed.job_id)
    smaller.tick()
    assert store.get_sweep(sweep.id).status is SweepStatus.FINISHED


def test_tpe_keeps_optuna_in_its_own_file(store, easgd_home):
    driver = _driver(store)
    sweep, _ = driver.create(_spec(method="tpe", run_cap=3, concurrency=1), BASE)
    for value in (0.5, 0.9, 0.6):
        driver.tick()
        (t,) = [t for t in _trials(store, sweep.id) if not t.state.is_terminal()]
        _evaluate(store, _start(store, t.job_id), [value])
        _end(store, t.job_id)
    driver.tick()
    done = store.get_sweep(sweep.id)
    assert done.status is SweepStatus.FINISHED
    assert [t.optuna_number for t in done.trials] == [0, 1, 2]
    path = optuna_path(sweep.id)
    assert path.is_relative_to(easgd_home) and path.is_file()
    optuna_db = sqlite3.connect(path)
    told = optuna_db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    assert told == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    optunas = {r[0] for r in optuna_db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"studies", "trials"} <= optunas
    assert not (optunas - {"alembic_version"}) & set(store.table_names())
    with store.engine.connect() as c:
        versions = c.execute(text("SELECT version_num FROM alembic_version")).fetchall()
    assert versions == [(head_revision(),)]  # our Alembic version table is ours alone


def test_a_lost_optuna_study_is_rebuilt_from_the_store_before_the_next_ask(store, easgd_home):
    driver = _driver(store)
    sweep, _ = driver.create(_spec(method="tpe", run_cap=4, concurrency=1), BASE)
    for value in (0.5, 0.9):
        driver.tick()
        (t,) = [t for t in _trials(store, sweep.id) if not t.state.is_terminal()]
        _evaluate(store, _start(store, t.job_id), [value])
        _end(store, t.job_id)
    optuna_path(sweep.id).unlink()
    _driver(store).tick()  # a service that starts on another machine, or lost its data directory
    optuna_db = sqlite3.connect(optuna_path(sweep.id))
    told = optuna_db.execute(
        "SELECT a.value_json, t.state, v.value FROM trials t"
        " JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'easgd_trial'"
        " LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number"
    ).fetchall()
    assert told == [("0", "COMPLETE", 0.5), ("1", "COMPLETE", 0.9), ("2", "RUNNING", None)]


def _corrupt(store: Store, sweep_id: int, column: str, value: str) -> None:
    with store.engine.begin() as c:
        c.execute(
            text(f"UPDATE sweeps SET {column} = :v WHERE id = :id"), {"v": value, "id": sweep_id}
        )


def test_a_sweep_whose_file_no_longer_parses_ends_failed_with_the_reason(store):
    driver = _driver(store)
    sweep, _ = driver.create(_spec(), BASE)
    driver.tick()
    running = _trials(store, sweep.id)[0]
    _start(store, running.job_id)
    _corrupt(store, sweep.id, "spec", json.dumps({**_spec(), "method": "bayes"}))
    driver.tick()
    failed = store.get_sweep(sweep.id)
    assert failed.status is SweepStatus.FAILED
    assert failed.message.startswith("its sweep file is refused now: method: bayes")
    assert store.get_job(running.job_id).cancel_requested
    assert {t.state for t in failed.trials} == {TrialState.CANCELLED}


def test_a_sweep_that_fails_every_pass_ends_failed_after_a_few(store):
    driver = _driver(store)
    sweep, _ = driver.create(_spec(), BASE)
    _corrupt(store, sweep.id, "base_config", "[1]")  # no mapping: no trial can be made of it
    for _ in range(MAX_FAILED_PASSES - 1):
        driver.tick()
        assert store.get_sweep(sweep.id).status is SweepStatus.RUNNING
    driver.tick()
    failed = store.get_sweep(sweep.id)
    assert failed.status is SweepStatus.FAILED
    assert failed.message.startswith(f"{MAX_FAILED_PASSES} passes in a row failed, the last with")
