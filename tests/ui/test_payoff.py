"""Compare's "Did it pay off?": each run's cost to first reach a target, its ratios to a
baseline and the verdict in words, on histories written by hand, so every figure is checked
against arithmetic done here; and the labels and warnings that say which runs are compared."""

from __future__ import annotations

import pytest

from db.entities import MetricPoint, RunRecord
from tests.support import run_record
from ui import payoff
from ui.run_labels import compare_labels, task_differences


def _run(run_id: str, **params) -> RunRecord:
    named = {k.replace("__", "."): v for k, v in params.items()}
    return run_record(run_id, params=named, name="mlp-digits-easgd")


def _points(run_id: str, key: str, steps_values, wall_per_step: float = 0.5):
    return [MetricPoint(run_id, key, s, s * wall_per_step, v) for s, v in steps_values]


SYNC = _run("job-1", optimizer__algorithm="sync", data__dataset="digits", model__name="mlp")
EASGD = _run(
    "job-2",
    optimizer__algorithm="easgd",
    optimizer__tau="4",
    data__dataset="digits",
    model__name="mlp",
)
LENET = _run(
    "job-3",
    optimizer__algorithm="eamsgd",
    optimizer__tau="10",
    data__dataset="mnist5k",
    model__name="lenet5",
)
ACC = "center_accuracy"


def _histories():
    """sync: 0.1, 0.5 at 20, 0.61 at 40; easgd: 0.1, 0.3 at 20, 0.47 at 30, 0.476 at 40.
    Training seconds 0.1 a step (sync) and 0.14 (easgd); bytes 40000 a step (sync) and a tenth
    of that (easgd), each recorded every 5 steps."""
    h = {
        ("job-1", ACC): _points("job-1", ACC, [(0, 0.1), (20, 0.5), (40, 0.61)]),
        ("job-2", ACC): _points("job-2", ACC, [(0, 0.1), (20, 0.3), (30, 0.47), (40, 0.476)]),
    }
    for run, seconds, sent in (("job-1", 0.1, 40000.0), ("job-2", 0.14, 4000.0)):
        steps = range(0, 41, 5)
        h[(run, "train_seconds")] = _points(run, "train_seconds", [(s, s * seconds) for s in steps])
        h[(run, "bytes_sent")] = _points(run, "bytes_sent", [(s, s * sent) for s in steps])
    return h


def test_the_cost_to_first_reach_a_target_and_its_ratios():
    runs = [SYNC, EASGD]
    labels = compare_labels(runs)
    assert labels == {"job-1": "sync (job-1)", "job-2": "easgd tau=4 (job-2)"}
    found = payoff.costs(_histories(), runs, labels, ACC, 0.45)
    sync, easgd = found
    # sync first reaches 0.45 at step 20 (0.5); easgd at step 30 (0.47).
    assert (sync.step, easgd.step) == (20, 30)
    assert sync.seconds == pytest.approx(2.0) and easgd.seconds == pytest.approx(4.2)
    assert (sync.bytes, easgd.bytes) == (800000.0, 120000.0)
    assert not sync.wall and not easgd.wall
    assert (sync.best, easgd.best) == (0.61, 0.476)
    table = payoff.table(found, "job-1")
    assert list(table["run"]) == ["sync (job-1) (baseline)", "easgd tau=4 (job-2)"]
    assert list(table["clock"]) == ["training", "training"]
    assert table["bytes ×"].tolist() == pytest.approx([1.0, 0.15])
    assert table["time ×"].tolist() == pytest.approx([1.0, 2.1])
    assert table["steps ×"].tolist() == pytest.approx([1.0, 1.5])
    assert payoff.verdicts(found, "job-1", 0.45) == [
        "easgd tau=4 (job-2) reached 0.45 with 0.15x sync (job-1)'s bytes but 2.1x its "
        "training seconds and 1.5x its steps."
    ]


def test_a_counter_between_two_records_is_read_on_the_line_between_them():
    h = _histories()
    h[("job-2", ACC)].append(MetricPoint("job-2", ACC, 33, 16.5, 0.9))
    (cost,) = payoff.costs(h, [EASGD], {"job-2": "e"}, ACC, 0.8)
    assert cost.step == 33
    assert cost.bytes == pytest.approx(33 * 4000.0) and cost.seconds == pytest.approx(33 * 0.14)


def test_runs_without_training_seconds_are_timed_by_the_wall_clock_and_say_so():
    h = _histories()
    del h[("job-2", "train_seconds")]
    found = payoff.costs(h, [SYNC, EASGD], {"job-1": "s", "job-2": "e"}, ACC, 0.45)
    assert found[1].wall and found[1].seconds == 15.0  # the metric's own wall time at step 30
    assert "wall seconds" in payoff.verdicts(found, "job-1", 0.45)[0]
    table = payoff.table(found, "job-1")
    assert list(table["clock"]) == ["training", "wall"]
    # Against a run timed by the wall clock, the baseline's wall time too (10 s at step 20),
    # never its training seconds (2 s): 15 / 10.
    assert table["time ×"].tolist() == pytest.approx([1.0, 1.5])
    assert "1.5x its wall seconds" in payoff.verdicts(found, "job-1", 0.45)[0]


def test_a_target_not_reached_and_a_baseline_that_did_not_reach_it():
    labels = {"job-1": "sync", "job-2": "easgd"}
    found = payoff.costs(_histories(), [SYNC, EASGD], labels, ACC, 0.55)
    assert found[1].step is None and found[1].best == 0.476
    assert payoff.verdicts(found, "job-1", 0.55) == ["easgd did not reach 0.55 (its best: 0.476)."]
    assert payoff.verdicts(found, "job-2", 0.55) == [
        "The baseline easgd did not reach 0.55 (its best: 0.476): lower the target or pick "
        "another baseline."
    ]
    table = payoff.table(found, "job-2")
    assert table["bytes ×"].isna().all()


def test_a_target_met_before_training_costs_nothing():
    found = payoff.costs(_histories(), [SYNC, EASGD], {"job-1": "s", "job-2": "e"}, ACC, 0.1)
    assert [(c.step, c.seconds, c.bytes) for c in found] == [(0, 0.0, 0.0), (0, 0.0, 0.0)]
    assert payoff.verdicts(found, "job-1", 0.1) == ["e reached 0.1, as s did at its start."]


def test_a_loss_target_is_reached_from_above():
    h = {
        ("a", "train_loss"): _points("a", "train_loss", [(0, 2.3), (5, 1.0), (9, 0.3333)]),
        ("b", "train_loss"): _points("b", "train_loss", [(0, 2.3), (5, 0.8), (9, 0.2)]),
    }
    runs = [_run("a"), _run("b")]
    # The weakest run's best is 0.3333: two figures on the easy side, 0.34.
    assert payoff.default_target(h, runs, "train_loss") == 0.34
    found = payoff.costs(h, runs, {"a": "a", "b": "b"}, "train_loss", 0.34)
    assert [c.step for c in found] == [9, 9]
    assert payoff.first_reaching(h[("b", "train_loss")], 0.9, higher=False).step == 5


def test_two_figures_are_not_lost_to_float_error():
    """0.29 / 0.01 is 28.999... in binary: the target must still be 0.29."""
    h = {("a", ACC): _points("a", ACC, [(0, 0.1), (5, 0.29)])}
    assert payoff.default_target(h, [_run("a")], ACC) == 0.29
    h = {("a", "train_loss"): _points("a", "train_loss", [(0, 2.0), (5, 0.57)])}
    assert payoff.default_target(h, [_run("a")], "train_loss") == 0.57


def test_a_task_field_a_run_did_not_record_is_its_default():
    """A run from before model.options existed learns what {} would: no warning."""
    old = _run("old", optimizer__algorithm="sync", model__name="mlp", data__dataset="digits")
    new = _run(
        "new",
        optimizer__algorithm="easgd",
        model__name="mlp",
        data__dataset="digits",
        model__options="{}",
        data__options="{}",
    )
    assert task_differences([old, new]) == []


def test_the_default_target_and_baseline():
    runs = [EASGD, SYNC]
    # The weakest best is easgd's 0.476: rounded down to two figures, 0.47.
    assert payoff.default_target(_histories(), runs, ACC) == 0.47
    assert payoff.default_target({}, runs, ACC) is None
    assert payoff.default_baseline(runs) == "job-1"  # sync, wherever it is
    assert payoff.default_baseline([EASGD, LENET]) == "job-2"
    assert payoff.default_baseline([]) is None


def test_labels_say_what_differs_and_the_task_warning_names_the_runs():
    labels = compare_labels([SYNC, EASGD, LENET])
    assert labels == {
        "job-1": "sync dataset=digits (job-1)",
        "job-2": "easgd tau=4 dataset=digits (job-2)",
        "job-3": "eamsgd tau=10 dataset=mnist5k (job-3)",
    }
    assert compare_labels([SYNC, EASGD], "name") == {
        "job-1": "job-1 (mlp-digits-easgd)",
        "job-2": "job-2 (mlp-digits-easgd)",
    }
    assert compare_labels([SYNC], "id") == {"job-1": "job-1"}
    with pytest.raises(ValueError, match="label by: one of"):
        compare_labels([SYNC], "colour")
    assert task_differences([SYNC, EASGD]) == []
    assert task_differences([SYNC, EASGD, LENET]) == [
        "data.dataset: digits (job-1, job-2), mnist5k (job-3)",
        "model.name: mlp (job-1, job-2), lenet5 (job-3)",
    ]
