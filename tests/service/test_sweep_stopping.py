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


def test_hyperband_stops_a_trial_whose_best_so_far_is_worse_than_the_threshold():
    curves = [
        Curve(0, running=True, succeeded=False, values=[0.2, 0.5, 0.6]),  # best 0.6: kept
        Curve(1, running=True, succeeded=False, values=[0.1, 0.3]),
        Curve(2, running=False, succeeded=True, values=[0.3, 0.7, 0.8, 0.9]),
        Curve(3, running=True, succeeded=False, values=[0.5]),  # before any bracket
    ]
    stopped = to_stop(HYPERBAND, "center_accuracy", "maximize", curves)
    # At iteration 2: 0.7, 0.5, 0.3; int(3 / 2) = 1 -> 0.5 is the threshold, 0.7 and 0.5 kept.
    assert set(stopped) == {1}
    assert stopped[1] == (
        "best center_accuracy so far 0.3 is outside the best 1/2 of the 3 trials at iteration 2 "
        "(the last kept: 0.5)"
    )


def test_hyperband_keeps_n_over_eta_rounded_down_plus_one():
    two = [
        Curve(0, running=True, succeeded=False, values=[0.1, 0.2]),
        Curve(1, running=True, succeeded=False, values=[0.3, 0.9]),
    ]
    assert to_stop(HYPERBAND, "m", "maximize", two) == {}  # int(2 / 2) + 1 = 2 kept
    eta3 = EarlyTerminate(type="hyperband", min_iter=2, eta=3)
    assert set(to_stop(eta3, "m", "maximize", two)) == {0}  # int(2 / 3) + 1 = 1 kept


def test_hyperband_judges_an_earlier_arrival_again_as_better_trials_reach_the_bracket():
    first = Curve(0, running=True, succeeded=False, values=[0.2, 0.4, 0.41])
    assert to_stop(HYPERBAND, "m", "maximize", [first]) == {}  # alone: kept
    second = Curve(1, running=True, succeeded=False, values=[0.3, 0.6])
    third = Curve(2, running=True, succeeded=False, values=[0.1, 0.5])
    assert set(to_stop(HYPERBAND, "m", "maximize", [first, second, third])) == {0}


def test_hyperband_minimizes_and_ignores_ties():
    loss = [
        Curve(n, running=True, succeeded=False, values=[2.0, v])
        for n, v in enumerate((1.0, 0.5, 1.5, 0.7))
    ]
    assert set(to_stop(HYPERBAND, "center_loss", "minimize", loss)) == {2}  # 0.5, 0.7, 1.0 kept
    tied = [Curve(n, running=True, succeeded=False, values=[0.5, 0.5]) for n in range(3)]
    assert to_stop(HYPERBAND, "m", "maximize", tied) == {}


def test_a_missing_value_is_left_out_as_wb_leaves_it_out():
    curves = [
        Curve(0, running=True, succeeded=False, values=[0.1, None]),  # one valid value: no bracket
        Curve(1, running=True, succeeded=False, values=[0.3, 0.4]),
        Curve(2, running=True, succeeded=False, values=[0.2, 0.3]),
    ]
    assert to_stop(HYPERBAND, "m", "maximize", curves) == {}
    curves[0].values.append(0.05)
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
