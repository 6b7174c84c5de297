"""Chart payloads, pure functions of shaped data; `ui.curve_view` draws them in the browser."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from db.entities import RunRecord
from training.run.metrics import BYTES_SENT, EPOCH, TRAIN_SECONDS
from ui.shaping import X_AXES, higher_is_better, param_value, params_of, run_label

# How the browser formats an axis's values (ui/assets/curves.js): numbers by magnitude, bytes
# in decimal units, seconds with the digits that matter at their size.
X_KINDS = {
    "step": "number",
    EPOCH: "number",
    "wall_time": "seconds",
    TRAIN_SECONDS: "seconds",
    BYTES_SENT: "bytes",
}
Y_KINDS = {BYTES_SENT: "bytes", TRAIN_SECONDS: "seconds"}
# A series of at most this many points (evaluations, mostly) marks each one: drawn as a bare
# line, a few evaluations read as straight segments of a curve that was never measured there.
MARKED_POINTS = 60


def curve_chart(
    data: pd.DataFrame,
    metric: str,
    x_axis: str = "step",
    log_scale: bool = False,
    height: int = 380,
) -> dict[str, Any]:
    """One series per run from the long table `ui.shaping.curves` returns.

    Points are sorted by x and stripped of values JSON cannot carry (NaN, infinities); on a log
    scale values <= 0 are dropped too, since they have no place on it. A table with `lo` and
    `hi` columns (`ui.shaping.grouped_curves`) gives each series a band, where both are finite
    (JSON's null elsewhere), and with `runs` and `of` columns how many of its runs each point
    averages.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x axis: one of {', '.join(X_AXES)} (received: {x_axis!r})")
    series = []
    for label, group in data.groupby("run", sort=False):
        x = group["x"].to_numpy(dtype=float)
        y = group["value"].to_numpy(dtype=float)
        keep = np.isfinite(x) & np.isfinite(y)
        if log_scale:
            keep &= y > 0
        order = np.argsort(x[keep], kind="stable")
        xs, ys = x[keep][order], y[keep][order]
        if not len(xs):
            continue
        one: dict[str, Any] = {"label": str(label), "x": xs.tolist(), "y": ys.tolist()}
        one["marks"] = len(xs) <= MARKED_POINTS
        if "lo" in group and "hi" in group:
            lo = group["lo"].to_numpy(dtype=float)[keep][order]
            hi = group["hi"].to_numpy(dtype=float)[keep][order]
            if log_scale:
                lo = np.where(lo > 0, lo, np.nan)
            if np.isfinite(lo).any() and np.isfinite(hi).any():
                one["lo"] = [float(v) if np.isfinite(v) else None for v in lo]
                one["hi"] = [float(v) if np.isfinite(v) else None for v in hi]
        if "runs" in group and "of" in group:
            one["n"] = [int(v) for v in group["runs"].to_numpy()[keep][order]]
            one["of"] = int(group["of"].iat[0])
        series.append(one)
    return {
        "series": series,
        "x_label": X_AXES[x_axis],
        "x_kind": X_KINDS[x_axis],
        "y_label": metric,
        "y_kind": Y_KINDS.get(metric, "number"),
        "log": bool(log_scale),
        "height": int(height),
    }


def finite_number(v: Any) -> bool:
    """A number an axis can place: not a bool, not NaN or infinite."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def number_axis(label: str, values: Sequence[float], kind: str = "number") -> dict[str, Any]:
    """A parallel-coordinates axis spanning `values` (half a unit each way around a single
    value, which has no span of its own)."""
    low, high = min(values), max(values)
    if low == high:
        low, high = low - 0.5, high + 0.5
    return {"label": label, "kind": kind, "min": low, "max": high}


def curve_grid(charts: list[dict[str, Any]], columns: int = 2) -> dict[str, Any]:
    """Several `curve_chart` payloads drawn as one grid whose cursors move together: the hover
    on one chart shows every chart's values at the same x, as W&B's and TensorBoard's panels."""
    return {"charts": charts, "columns": max(1, min(int(columns), len(charts) or 1))}


def runs_parallel_chart(
    runs: Sequence[RunRecord],
    metric: str,
    keys: Sequence[str],
    height: int = 340,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Parallel coordinates (ui/assets/parallel.js) of the parameters `keys` against each
    run's final `metric`, one line per run that has a finite one; the best run drawn thick.

    A parameter whose values are all numbers gets a number axis (a log one when all are
    positive and span two decades or more, as learning rates do), any other a category axis
    in sorted order; a parameter a run's algorithm does not use reads "-" there."""
    shown = []
    for r in runs:
        m = r.metrics.get(metric)
        if m is not None and finite_number(m.value):
            shown.append((r, params_of(r), m.value))
    axes: list[dict[str, Any]] = []
    columns: list[list[Any]] = []
    for key in keys:
        raw = [param_value(used.get(key)) for _, used, _ in shown]
        numbers = [v for v in raw if finite_number(v)]
        if len(numbers) == len(raw) and numbers:
            log = min(numbers) > 0 and max(numbers) / min(numbers) >= 100
            axes.append(number_axis(key, numbers, "log" if log else "number"))
            columns.append(numbers)
        else:
            labels = ["-" if v is None else str(v) for v in raw]
            ticks = sorted(set(labels), key=_category_order)
            axes.append({"label": key, "kind": "category", "ticks": ticks})
            columns.append([ticks.index(t) for t in labels])
    values = [v for _, _, v in shown]
    if values:
        axes.append(number_axis(metric, values))
    higher = higher_is_better(metric)
    best = (max if higher else min)(range(len(values)), key=values.__getitem__, default=None)
    lines = [
        {
            "label": names[r.id] if names else run_label(r),
            "values": [*(c[i] for c in columns), value],
            "state": str(r.status),
            "best": i == best,
        }
        for i, (r, _, value) in enumerate(shown)
    ]
    return {
        "axes": axes,
        "lines": lines,
        "goal": "maximize" if higher else "minimize",
        "height": int(height),
        "title": f"Parameters against the final {metric}",
    }


def _category_order(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order, then words in alphabetical order."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
