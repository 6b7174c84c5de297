"""What the Sweeps page draws: the trials table, the best-so-far curve (a `ui.curve_view`
payload) and the parallel coordinates of the parameters against the final metric
(drawn by `ui.parallel_view`). Pure functions of a sweep."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from db.entities import SweepRecord, TrialState
from service.sweeps.space import Dimension
from service.sweeps.spec import dimensions, parse_sweep_data
from ui.charts import finite_number, number_axis

_LOG_KINDS = ("log_uniform", "log_uniform_values")


def sweep_dimensions(sweep: SweepRecord) -> list[Dimension]:
    return dimensions(parse_sweep_data(sweep.spec))


def _label(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def trials_frame(sweep: SweepRecord) -> pd.DataFrame:
    """One row per trial: its number, state (`stopping` while the job of a trial stopped early
    is cancelled), parameters, final metric, job and run, and why it ended as it did."""
    paths = [d.path for d in sweep_dimensions(sweep)]
    rows = []
    for t in sweep.trials:
        stopping = t.state is TrialState.RUNNING and t.message  # its job is being cancelled
        row: dict[str, Any] = {
            "trial": t.number,
            "state": "stopping" if stopping else t.state.value,
        }
        for p in paths:
            v = t.params.get(p)
            row[p] = v if finite_number(v) else (None if v is None else _label(v))
        row[sweep.metric] = t.value
        row["job"] = t.job_id
        row["run"] = t.run_id
        row["note"] = t.message
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["trial", "state", *paths, sweep.metric, "job", "run", "note"]
    )


def best_so_far_chart(sweep: SweepRecord, height: int = 300) -> dict[str, Any]:
    """The succeeded trials' metric by trial number, and the best of them so far."""
    sign = 1 if sweep.goal == "maximize" else -1
    xs, ys, best = [], [], []
    for t in sweep.trials:
        if t.state is TrialState.SUCCEEDED and finite_number(t.value):
            xs.append(t.number)
            ys.append(t.value)
            best.append(t.value if not best else sign * max(sign * best[-1], sign * t.value))
    series = []
    if xs:
        series = [
            {"label": "trial", "x": xs, "y": ys},
            {"label": "best so far", "x": xs, "y": best},
        ]
    return {
        "series": series,
        "x_label": "trial",
        "x_kind": "number",
        "y_label": sweep.metric,
        "y_kind": "number",
        "log": False,
        "height": height,
    }


def parallel_chart(sweep: SweepRecord, height: int = 360) -> dict[str, Any]:
    """One axis per parameter (a log axis for log-distributed ones, the listed values in order
    for `values`), the metric last; one line per trial with a final metric."""
    dims = sweep_dimensions(sweep)
    shown = [t for t in sweep.trials if finite_number(t.value)]
    axes = []
    for d in dims:
        if d.kind in ("categorical", "constant"):
            axes.append(
                {"label": d.path, "kind": "category", "ticks": [_label(c) for c in d.choices]}
            )
        else:
            low, high = (
                (math.exp(d.low), math.exp(d.high)) if d.kind == "log_uniform" else (d.low, d.high)
            )
            kind = "log" if d.kind in _LOG_KINDS else "number"
            axes.append({"label": d.path, "kind": kind, "min": low, "max": high})
    values = [t.value for t in shown]
    if values:
        axes.append(number_axis(sweep.metric, values))
    best = sweep.best_trial()
    lines = []
    for t in shown:
        points = []
        for d, axis in zip(dims, axes):
            v = t.params.get(d.path)
            points.append(axis["ticks"].index(_label(v)) if axis["kind"] == "category" else v)
        lines.append(
            {
                "label": f"trial {t.number}",
                "values": [*points, t.value],
                "state": t.state.value,
                "best": best is not None and t.number == best.number,
            }
        )
    return {
        "axes": axes,
        "lines": lines,
        "goal": sweep.goal,
        "height": height,
        "title": "Parallel coordinates of the trials",
    }
