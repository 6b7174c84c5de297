"""Compare's grouping (mean and band over seeds) and its parallel coordinates, checked against
numbers worked out by hand from the definitions: the sample standard deviation, the straight
line between two recorded points, the best run by the metric's direction."""

from __future__ import annotations

import math

import pytest

from db.entities import LatestValue, MetricPoint
from tests.support import run_record
from ui.charts import curve_chart, curve_grid, runs_parallel_chart
from ui.shaping import curves, group_of, grouped_curves, param_value, summary


def _point(step: float, value: float) -> MetricPoint:
    return MetricPoint(run_id="", key="acc", step=int(step), wall_time=float(step), value=value)


def _latest(value: float, low: float | None = None, high: float | None = None) -> LatestValue:
    return LatestValue(step=40, value=value, min=low, max=high, wall_time=40.0)


def _runs():
    """Two algorithms, two seeds each; seed 2 of easgd recorded at other steps and stopped
    early (step 30), and a sync run with no tau (its algorithm does not use one)."""

    def record(run_id, algorithm, seed, lr="0.05"):
        params = {
            "optimizer.algorithm": algorithm,
            "seed": str(seed),
            "optimizer.learning_rate": lr,
        }
        if algorithm == "easgd":
            params["optimizer.tau"] = "4"
        return run_record(run_id, params)

    runs = [
        record("e1", "easgd", 1),
        record("e2", "easgd", 2),
        record("s1", "sync", 1, lr="0.5"),
        record("s2", "sync", 2, lr="0.5"),
    ]
    histories = {
        ("e1", "acc"): [_point(0, 0.10), _point(20, 0.50), _point(40, 0.70)],
        ("e2", "acc"): [_point(10, 0.40), _point(30, 0.80)],
        ("s1", "acc"): [_point(0, 0.2), _point(20, 0.6)],
        ("s2", "acc"): [_point(0, 0.4), _point(20, 0.6)],
    }
    return runs, histories


def test_a_group_is_at_each_x_the_mean_of_the_runs_that_have_a_value_there():
    runs, histories = _runs()
    data = curves(histories, runs, "acc")
    grouped = grouped_curves(data, runs, ["optimizer.algorithm"], band="std")
    easgd = grouped[grouped["run"] == "algorithm=easgd (2 runs)"]
    # Every x either run recorded; e2 covers only steps 10..30, e1 steps 0..40.
    assert list(easgd["x"]) == [0.0, 10.0, 20.0, 30.0, 40.0]
    # e1 at 10 and 30 lies on its straight lines: 0.1 + 0.4 * 10/20 = 0.3, 0.5 + 0.2 * 10/20 = 0.6;
    # e2 at 20 lies halfway between 0.4 and 0.8: 0.6. At 0 and 40 e2 has no value.
    e1 = [0.1, 0.3, 0.5, 0.6, 0.7]
    e2 = [None, 0.4, 0.6, 0.8, None]
    for row, a, b in zip(easgd.itertuples(), e1, e2, strict=True):
        assert row.of == 2
        if b is None:
            assert (row.value, row.runs) == (pytest.approx(a), 1)
            assert math.isnan(row.lo) and math.isnan(row.hi)  # one run: no band
            continue
        mean = (a + b) / 2
        std = math.sqrt(((a - mean) ** 2 + (b - mean) ** 2) / (2 - 1))
        assert row.value == pytest.approx(mean)
        assert (row.lo, row.hi) == (pytest.approx(mean - std), pytest.approx(mean + std))
        assert row.runs == 2
    sync = grouped[grouped["run"] == "algorithm=sync (2 runs)"]
    assert list(sync["value"]) == pytest.approx([0.3, 0.6])
    assert list(sync["hi"] - sync["lo"]) == pytest.approx([2 * math.sqrt(0.02), 0.0])


def test_a_run_with_no_value_yet_counts_in_its_group_and_draws_nothing():
    runs, histories = _runs()
    late = run_record("e3", {**runs[0].params, "seed": "3"})
    data = curves(histories, [*runs, late], "acc")
    grouped = grouped_curves(data, [*runs, late], ["optimizer.algorithm"], band="minmax")
    easgd = grouped[grouped["run"] == "algorithm=easgd (3 runs)"]
    assert set(easgd["of"]) == {3} and set(easgd["runs"]) == {1, 2}
    assert list(easgd["value"]) == pytest.approx([0.1, 0.35, 0.55, 0.7, 0.7])


def test_min_max_band_and_a_group_of_one_run_without_a_band():
    runs, histories = _runs()
    data = curves(histories, runs, "acc")
    by_seed = grouped_curves(data, runs, ["optimizer.algorithm", "seed"], band="minmax")
    assert sorted(set(by_seed["run"])) == [
        "algorithm=easgd, seed=1 (1 run)",
        "algorithm=easgd, seed=2 (1 run)",
        "algorithm=sync, seed=1 (1 run)",
        "algorithm=sync, seed=2 (1 run)",
    ]
    assert by_seed["lo"].isna().all() and by_seed["hi"].isna().all()
    by_lr = grouped_curves(data, runs, ["optimizer.learning_rate"], band="minmax")
    sync = by_lr[by_lr["run"] == "learning_rate=0.5 (2 runs)"]
    assert list(sync["lo"]) == [0.2, 0.6] and list(sync["hi"]) == [0.4, 0.6]
    with pytest.raises(ValueError, match="band: one of std, minmax, none"):
        grouped_curves(data, runs, ["seed"], band="iqr")


def test_a_parameter_the_algorithm_does_not_use_groups_as_a_dash():
    runs, _ = _runs()
    assert group_of(runs[0], ["optimizer.tau"]) == "tau=4"
    assert group_of(runs[2], ["optimizer.tau"]) == "tau=-"


def test_a_group_chart_carries_its_band_and_the_grid_links_several_charts():
    runs, histories = _runs()
    grouped = grouped_curves(curves(histories, runs, "acc"), runs, ["optimizer.algorithm"])
    chart = curve_chart(grouped, "acc")
    easgd = chart["series"][0]
    assert easgd["label"] == "algorithm=easgd (2 runs)"
    assert len(easgd["lo"]) == len(easgd["hi"]) == len(easgd["x"]) == 5
    # A point of one run has no band (JSON's null) and says it averages 1 of the 2 runs.
    assert easgd["lo"][0] is None and easgd["hi"][4] is None
    assert (easgd["n"], easgd["of"]) == ([1, 2, 2, 2, 1], 2)
    inner = zip(easgd["lo"][1:4], easgd["y"][1:4], easgd["hi"][1:4])
    assert all(lo < y < hi for lo, y, hi in inner)
    plain = curve_chart(curves(histories, runs, "acc"), "acc")
    assert all("lo" not in s and "n" not in s for s in plain["series"])
    grid = curve_grid([chart, plain])
    assert grid == {"charts": [chart, plain], "columns": 2}
    assert curve_grid([chart])["columns"] == 1


def test_parallel_coordinates_of_runs_against_their_final_metric():
    final = {"e1": 0.7, "e2": 0.8, "s1": 0.6, "s2": float("nan")}
    runs = [
        run_record(
            r.id,
            r.params,
            {"val_accuracy": _latest(final[r.id], 0.1, final[r.id])},
        )
        for r in _runs()[0]
    ]
    chart = runs_parallel_chart(
        runs, "val_accuracy", ["optimizer.learning_rate", "optimizer.algorithm"]
    )
    assert [a["label"] for a in chart["axes"]] == [
        "optimizer.learning_rate",
        "optimizer.algorithm",
        "val_accuracy",
    ]
    lr, algorithm, metric = chart["axes"]
    # 0.05 and 0.5 span one decade: a number axis, not a log one.
    assert (lr["kind"], lr["min"], lr["max"]) == ("number", 0.05, 0.5)
    assert algorithm == {
        "label": "optimizer.algorithm",
        "kind": "category",
        "ticks": ["easgd", "sync"],
    }
    assert (metric["min"], metric["max"]) == (0.6, 0.8)
    # s2's final value is not a number: no line for it.
    lines = {line["label"]: line for line in chart["lines"]}
    assert set(lines) == {"e1", "e2", "s1"}
    assert lines["s1"]["values"] == [0.5, 1, 0.6]
    assert [label for label, line in lines.items() if line["best"]] == ["e2"]
    assert chart["goal"] == "maximize"
    loss = runs_parallel_chart(runs, "train_loss", ["seed"])
    assert loss["lines"] == [] and loss["goal"] == "minimize"


def test_a_learning_rate_over_two_decades_gets_a_log_axis_and_the_lowest_loss_is_best():
    runs = [
        run_record(f"r{i}", {"optimizer.learning_rate": lr}, {"train_loss": _latest(loss)})
        for i, (lr, loss) in enumerate((("0.001", 0.9), ("0.01", 0.4), ("0.1", 0.6)))
    ]
    chart = runs_parallel_chart(runs, "train_loss", ["optimizer.learning_rate"])
    assert chart["axes"][0] == {
        "label": "optimizer.learning_rate",
        "kind": "log",
        "min": 0.001,
        "max": 0.1,
    }
    assert [line["label"] for line in chart["lines"] if line["best"]] == ["r1"]
    assert chart["goal"] == "minimize"


def test_recorded_text_reads_as_numbers_where_it_is_one():
    assert param_value("0.05") == 0.05 and param_value("4") == 4
    assert param_value("true") is True and param_value("easgd") == "easgd"
    assert param_value('{"a": 1}') == '{"a": 1}' and param_value(None) is None


def test_summary_of_several_metrics_has_a_final_and_a_best_for_each():
    run = run_record(
        "r",
        metrics={
            "center_accuracy": _latest(0.9, 0.1, 0.95),
            "train_loss": _latest(0.3, 0.2, 2.0),
        },
    )
    table = summary([run], ["center_accuracy", "train_loss"])
    row = table.iloc[0]
    assert (row["center_accuracy final"], row["center_accuracy best"]) == (0.9, 0.95)
    assert (row["train_loss final"], row["train_loss best"]) == (0.3, 0.2)
