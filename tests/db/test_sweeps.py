"""Sweeps and their trials (db/sweeps.py), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.entities import JobStatus, SweepStatus, TrialState
from db.errors import InvalidTransition, NotFound, StoreError
from db.store import Store


def _sweep(store: Store, **kw):
    args = dict(
        method="random",
        metric="center_accuracy",
        goal="maximize",
        seed=7,
        run_cap=4,
        concurrency=2,
        spec={"method": "random", "parameters": {"optimizer.tau": {"values": [1, 2]}}},
        base_config={"data": {"dataset": "digits"}},
        name="s",
        source="cli",
    )
    return store.create_sweep(**{**args, **kw})


def _job(name: str = "t") -> dict:
    return {"config": {"seed": 1}, "workers": 2, "name": name, "source": "cli"}


def test_a_trial_and_its_job_are_written_together(store):
    sweep = _sweep(store)
    trial = store.add_trial(sweep.id, 0, {"optimizer.tau": 2}, job=_job("s-trial-0"))
    assert trial.state is TrialState.QUEUED and trial.params == {"optimizer.tau": 2}
    job = store.get_job(trial.job_id)
    assert job.status is JobStatus.QUEUED and job.name == "s-trial-0" and job.source == "cli"
    again = store.get_sweep(sweep.id)
    assert [t.number for t in again.trials] == [0]
    assert again.spec["parameters"] == {"optimizer.tau": {"values": [1, 2]}}
    assert again.base_config == {"data": {"dataset": "digits"}}


def test_a_trial_whose_job_is_refused_leaves_no_job(store):
    sweep = _sweep(store)
    with pytest.raises(StoreError, match="workers"):
        store.add_trial(sweep.id, 0, {}, job={**_job(), "workers": 0})
    assert store.get_sweep(sweep.id).trials == [] and store.list_jobs() == []
    failed = store.add_trial(sweep.id, 0, {"x": 1}, job=None, message="not launched: bad")
    assert failed.state is TrialState.FAILED and failed.job_id is None and failed.ended_at
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        store.add_trial(sweep.id, 0, {}, job=_job())
    assert store.list_jobs() == []  # the job of the refused trial went with it


def test_trial_states_never_leave_a_terminal_one(store):
    sweep = _sweep(store)
    t = store.add_trial(sweep.id, 0, {}, job=_job())
    with pytest.raises(InvalidTransition, match="not a valid transition"):
        store.transition_trial(t.id, TrialState.SUCCEEDED)
    t = store.transition_trial(t.id, TrialState.RUNNING, run_id=f"job-{t.job_id}")
    assert t.run_id == f"job-{t.job_id}"
    t = store.transition_trial(t.id, "stopped_early", value=0.5, message="poor")
    assert (t.state, t.value, t.message) == (TrialState.STOPPED_EARLY, 0.5, "poor")
    for target in TrialState:
        with pytest.raises(InvalidTransition, match="terminal"):
            store.transition_trial(t.id, target)
    inf = store.add_trial(sweep.id, 1, {}, job=_job())
    store.transition_trial(inf.id, "running")
    assert store.transition_trial(inf.id, "failed", value=float("inf")).value is None


def test_a_stop_request_and_the_end_of_a_sweep(store):
    sweep = _sweep(store)
    assert store.request_sweep_stop(sweep.id).stop_requested
    ended = store.end_sweep(sweep.id, SweepStatus.STOPPED, "2 trials")
    assert ended.status is SweepStatus.STOPPED and ended.ended_at and ended.message == "2 trials"
    with pytest.raises(InvalidTransition, match="terminal"):
        store.end_sweep(sweep.id, "finished")
    with pytest.raises(InvalidTransition, match="takes no trial"):
        store.add_trial(sweep.id, 0, {}, job=_job())
    with pytest.raises(StoreError, match="ends finished, stopped or failed"):
        store.end_sweep(_sweep(store).id, "running")


def test_listing_filters_by_status_newest_first(store):
    a = _sweep(store, name="a")
    _sweep(store, name="b")
    store.end_sweep(a.id, "finished")
    assert [s.name for s in store.list_sweeps()] == ["b", "a"]
    assert [s.name for s in store.list_sweeps(status="running")] == ["b"]
    with pytest.raises(StoreError, match="sweep status: one of"):
        store.list_sweeps(status="done")
    with pytest.raises(NotFound, match="easgd sweep list"):
        store.get_sweep(2**63 + 5)
    with pytest.raises(StoreError, match="sweep id"):
        store.get_sweep("1")


def test_the_best_trial_is_a_succeeded_one(store):
    sweep = _sweep(store, goal="minimize", metric="center_loss")
    values = {0: ("succeeded", 0.4), 1: ("stopped_early", 0.1), 2: ("succeeded", 0.3)}
    for n, (state, value) in values.items():
        t = store.add_trial(sweep.id, n, {}, job=_job())
        store.transition_trial(t.id, "running")
        store.transition_trial(t.id, state, value=value)
    got = store.get_sweep(sweep.id)
    assert got.best_trial().number == 2 and got.to_dict()["best_trial"] == 2


def test_bad_sweep_fields_are_refused(store):
    for bad, match in (
        ({"goal": "max"}, "goal: maximize or minimize"),
        ({"run_cap": 0}, "run_cap: a positive integer"),
        ({"concurrency": True}, "concurrency: a positive integer"),
        ({"metric": "a b"}, "metric name"),
        ({"seed": -1}, "seed"),
        ({"source": "web"}, "sweep source"),
    ):
        with pytest.raises(StoreError, match=match):
            _sweep(store, **bad)
    sweep = _sweep(store)
    with pytest.raises(StoreError, match="JSON values only"):
        store.add_trial(sweep.id, 0, {"x": float("nan")}, job=_job())


def test_deleting_a_sweep_deletes_its_trials(store):
    sweep = _sweep(store)
    store.add_trial(sweep.id, 0, {}, job=_job())
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM sweeps WHERE id = :id"), {"id": sweep.id})
        left = conn.execute(text("SELECT count(*) FROM sweep_trials")).scalar()
    assert left == 0


def test_stopping_a_trial_early_marks_it_cancels_its_job_and_notes_its_run_at_once(store):
    sweep = _sweep(store)
    t = store.add_trial(sweep.id, 0, {}, job=_job())
    with pytest.raises(InvalidTransition, match="is queued; it cannot be stopped early"):
        store.stop_trial_early(t.id, "poor")
    store.transition_job(t.job_id, JobStatus.RUNNING, run_id="r0")
    store.create_run("r0", params={}, job_id=t.job_id, source="cli")
    store.log_metrics("r0", [("center_accuracy", 30, 1.0, 0.2)])
    store.transition_trial(t.id, TrialState.RUNNING, run_id="r0")
    stopping = store.stop_trial_early(t.id, "poor")
    assert stopping.state is TrialState.RUNNING and stopping.message == "poor"
    assert store.get_job(t.job_id).cancel_requested
    events = [(e.kind, e.step, e.message) for e in store.events("r0")]
    assert ("stopped_early", 30, f"sweep {sweep.id}: poor") in events
    with pytest.raises(InvalidTransition, match="already stopping"):
        store.stop_trial_early(t.id, "again")
    assert len([e for e in store.events("r0") if e.kind == "stopped_early"]) == 1


def test_a_sweep_asked_to_stop_takes_no_new_trial(store):
    sweep = _sweep(store)
    store.request_sweep_stop(sweep.id)
    with pytest.raises(InvalidTransition, match="is stopping; it takes no trial"):
        store.add_trial(sweep.id, 0, {}, job=_job())
    assert store.get_sweep(sweep.id).trials == [] and store.list_jobs() == []
