"""Early stopping rules (service/sweeps/stopping.py) on hand-written curves."""

from __future__ import annotations

from service.sweeps.spec import EarlyTerminate
from service.sweeps.stopping import Curve, to_stop

HYPERBAND = EarlyTerminate(type="hyperband", min_iter=2, eta=2)


def test_hyperband_brackets_are_wbs():
    assert HYPERBAND.brackets()[:4] == [2, 4, 8, 16]
    by_max = EarlyTerminate(type="hyperband", max_iter=27, s=3, eta=3)
    assert by_max.brackets() == [1, 3, 9]


def test_an_eta_near_one_gives_few_brackets_at_once():
    near_one = EarlyTerminate(type="hyperband", min_iter=5, eta=1.0000000001)
    assert near_one.brackets() == [5]  # 100 tries, as W&B makes, all the same iteration
    steep = EarlyTerminate(type="hyperband", min_iter=1, eta=100)
    assert steep.brackets() == [1, 100, 10**4, 10**6]  # none past the longest curve we take


def test_hyperband_keeps_the_best_half_at_a_bracket():
    curves = [
        Curve(0, running=True, succeeded=False, values=[0.2, 0.5, 0.6]),
        Curve(1, running=True, succeeded=False, values=[0.1, 0.3]),
        Curve(2, running=False, succeeded=True, values=[0.3, 0.7, 0.8, 0.9]),
        Curve(3, running=True, succeeded=False, values=[0.5]),  # before any bracket
    ]
    stopped = to_stop(HYPERBAND, "center_accuracy", "maximize", curves)
    assert set(stopped) == {1}  # at iteration 2: 0.7 and 0.5 kept of 0.7, 0.5, 0.3
    assert stopped[1].startswith("center_accuracy 0.3 at iteration 2 is outside the best 1/2")


def test_hyperband_judges_an_earlier_arrival_again_as_better_trials_reach_the_bracket():
    first = Curve(0, running=True, succeeded=False, values=[0.2, 0.4, 0.5])
    assert to_stop(HYPERBAND, "m", "maximize", [first]) == {}  # alone: kept
    second = Curve(1, running=True, succeeded=False, values=[0.3, 0.6])
    assert set(to_stop(HYPERBAND, "m", "maximize", [first, second])) == {0}


def test_hyperband_minimizes_and_ignores_ties():
    loss = [
        Curve(n, running=True, succeeded=False, values=[2.0, v])
        for n, v in enumerate((1.0, 0.5, 1.5, 0.7))
    ]
    assert set(to_stop(HYPERBAND, "center_loss", "minimize", loss)) == {0, 2}
    tied = [Curve(n, running=True, succeeded=False, values=[0.5, 0.5]) for n in range(3)]
    assert to_stop(HYPERBAND, "m", "maximize", tied) == {}


def test_a_missing_value_counts_as_the_worst():
    curves = [
        Curve(0, running=True, succeeded=False, values=[0.1, None]),
        Curve(1, running=True, succeeded=False, values=[0.1, 0.2]),
    ]
    assert set(to_stop(HYPERBAND, "m", "maximize", curves)) == {0}


def test_median_waits_for_succeeded_trials_then_stops_the_worse_half():
    rule = EarlyTerminate(type="median", min_iter=2, min_trials=2)
    done = [
        Curve(0, running=False, succeeded=True, values=[0.5, 0.6, 0.9]),
        Curve(1, running=False, succeeded=False, values=[0.1, 0.1]),  # stopped: not counted
    ]
    poor = Curve(2, running=True, succeeded=False, values=[0.2, 0.3])
    assert to_stop(rule, "m", "maximize", [*done, poor]) == {}  # one succeeded trial only
    done.append(Curve(3, running=False, succeeded=True, values=[0.4, 0.8, 0.95]))
    stopped = to_stop(rule, "m", "maximize", [*done, poor])
    assert set(stopped) == {2}
    assert stopped[2] == (
        "best m 0.3 by iteration 2 is worse than the median 0.7 of the 2 succeeded trials there"
    )
    early = Curve(4, running=True, succeeded=False, values=[0.0])  # before min_iter
    good = Curve(5, running=True, succeeded=False, values=[0.3, 0.75])
    assert set(to_stop(rule, "m", "maximize", [*done, early, good])) == set()
