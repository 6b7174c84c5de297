"""The chart payload: what the browser's uPlot chart receives for a table of curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ui.charts import curve_chart


def _table(rows):
    return pd.DataFrame(rows, columns=["run", "run_id", "step", "x", "value", "raw"])


def test_one_series_per_run_in_table_order_sorted_by_x():
    data = _table(
        [
            ("b", "rb", 2, 20.0, 0.3, 0.3),
            ("b", "rb", 1, 10.0, 0.2, 0.2),
            ("a", "ra", 1, 5.0, 0.9, 0.9),
        ]
    )
    chart = curve_chart(data, "center_accuracy", "wall_time")
    assert [s["label"] for s in chart["series"]] == ["b", "a"]
    assert chart["series"][0] == {"label": "b", "x": [10.0, 20.0], "y": [0.2, 0.3], "marks": True}
    assert (chart["x_label"], chart["x_kind"], chart["y_label"]) == (
        "Wall time (s)",
        "seconds",
        "center_accuracy",
    )
    assert chart["log"] is False and chart["height"] == 380


def test_values_json_cannot_carry_or_a_log_scale_cannot_show_are_dropped():
    data = _table(
        [
            ("a", "ra", 0, 0.0, 0.0, 0.0),
            ("a", "ra", 1, 1.0, np.nan, np.nan),
            ("a", "ra", 2, 2.0, np.inf, np.inf),
            ("a", "ra", 3, 3.0, 0.5, 0.5),
            ("z", "rz", 0, 0.0, -1.0, -1.0),
        ]
    )
    linear = curve_chart(data, "train_loss")
    assert linear["series"] == [
        {"label": "a", "x": [0.0, 3.0], "y": [0.0, 0.5], "marks": True},
        {"label": "z", "x": [0.0], "y": [-1.0], "marks": True},
    ]
    log = curve_chart(data, "train_loss", log_scale=True)
    assert log["series"] == [{"label": "a", "x": [3.0], "y": [0.5], "marks": True}]  # z: none left
    json.dumps(log, allow_nan=False)  # strict JSON, as the browser parses it


def test_bytes_axis_and_bad_axis():
    data = _table([("a", "ra", 0, 1e9, 1.0, 1.0)])
    assert curve_chart(data, "train_loss", "bytes_sent")["x_kind"] == "bytes"
    assert curve_chart(data, "train_loss", "train_seconds")["x_kind"] == "seconds"
    with pytest.raises(ValueError, match=r"one of step, epoch, wall_time, train_seconds, bytes"):
        curve_chart(data, "train_loss", "minutes")


def test_sparse_points_are_marked_and_dense_ones_are_not():
    """Evaluations every few hundred steps are dots on their line; a per-step curve is a line."""
    sparse = _table([("e", "re", s, float(s), 0.5, 0.5) for s in range(0, 600, 100)])
    dense = _table([("t", "rt", s, float(s), 1.0, 1.0) for s in range(61)])
    assert curve_chart(sparse, "center_accuracy")["series"][0]["marks"] is True
    assert curve_chart(dense, "train_loss")["series"][0]["marks"] is False
