"""Pure data shaping for the pages: run tables, curves on any x-axis, smoothing, summaries."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from db.entities import MetricPoint, RunRecord
from training.run.metrics import BYTES_SENT, EPOCH, KEY_METRICS, TRAIN_SECONDS
from training.schema import resolved_params, schema_default
from training.schema.params import param_value

# Table columns that hold bytes (shown in the same units as the charts' byte axes).
BYTES_COLUMNS = (BYTES_SENT, "bytes sent")
X_AXES = {
    "step": "Step",
    EPOCH: "Epoch",
    "wall_time": "Wall time (s)",
    TRAIN_SECONDS: "Training time (s)",
    BYTES_SENT: "Bytes sent per rank",
}
# The axes that are themselves metrics, read at the steps where the drawn metric was recorded.
METRIC_AXES = (EPOCH, TRAIN_SECONDS, BYTES_SENT)


def run_label(run: RunRecord) -> str:
    return f"{run.id} ({run.name})" if run.name and run.name != run.id else run.id


def params_of(run: RunRecord) -> dict[str, Any]:
    """The parameters a run's algorithm uses, as the values it trained with: a `sync` run
    recorded with a `tau` (as runs were before recording followed the registry) has no tau to
    compare, and a momentum left blank reads as the algorithm's."""
    return resolved_params(run.params)


def differing_params(runs: Sequence[RunRecord]) -> list[str]:
    """Parameter keys whose value is not the same in every run (what tells runs apart); a
    parameter a run does not use counts as the schema's default, so that `-` against `false`
    is no difference."""
    used = [params_of(r) for r in runs]
    keys = sorted({k for p in used for k in p})
    if len(runs) < 2:
        return [k for k in keys if k in ("optimizer.algorithm", "optimizer.tau", "workers")]
    return [k for k in keys if len({_hashable(p.get(k, schema_default(k))) for p in used}) > 1]


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def runs_frame(runs: Sequence[RunRecord], metrics: Sequence[str] = KEY_METRICS) -> pd.DataFrame:
    params = differing_params(runs)
    rows = []
    for r in runs:
        # What tells runs apart first (the key metrics), then how they ran, then parameters.
        row: dict[str, Any] = {"run": r.id, "name": r.name, "status": r.status}
        for m in metrics:
            row[m] = r.metrics[m].value if m in r.metrics else None
        row |= {
            "algorithm": r.params.get("optimizer.algorithm"),
            "workers": r.workers,
            "progress": (f"{r.last_step}/{r.total_steps}" if r.total_steps else str(r.last_step)),
            "duration (s)": None if r.duration is None else round(r.duration, 1),
            "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.start_time)),
            "source": r.source,
        }
        used = params_of(r)
        for p in params:
            if p != "optimizer.algorithm":
                row[p] = used.get(p)
        rows.append(row)
    return pd.DataFrame(rows)


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased so the start is not pulled to 0."""
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty(len(values))
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isnan(v):
            out[i] = np.nan
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def curves(
    histories: dict[tuple[str, str], list[MetricPoint]],
    runs: Sequence[RunRecord],
    metric: str,
    x_axis: str = "step",
    smoothing: float = 0.0,
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Long table (run, x, value) of one metric against the chosen axis, each run named by
    `labels` (default: its id and name).

    For METRIC_AXES (epoch, training seconds, bytes sent) the axis is itself a metric: it is
    interpolated at the steps where `metric` was recorded (each grows with the step), so sparse
    evaluation curves line up with per-step counters. Wall time is the metric's own: seconds
    since the run's first step, evaluations and checkpoints included.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x axis: one of {', '.join(X_AXES)} (received: {x_axis!r})")
    labels = labels or {r.id: run_label(r) for r in runs}
    frames = []
    for r in runs:
        points = [p for p in histories.get((r.id, metric), []) if p.value is not None]
        if not points:
            continue
        steps = np.array([p.step for p in points], dtype=float)
        y = np.array([p.value for p in points], dtype=float)
        if x_axis == "step":
            x = steps
        elif x_axis == "wall_time":
            x = np.array([p.wall_time for p in points], dtype=float)
        else:
            ref = [p for p in histories.get((r.id, x_axis), []) if p.value is not None]
            if not ref:
                continue
            x = np.interp(steps, [p.step for p in ref], [p.value for p in ref])
        frames.append(
            pd.DataFrame(
                {
                    "run": labels[r.id],
                    "run_id": r.id,
                    "step": steps,
                    "x": x,
                    "value": smooth(y, smoothing),
                    "raw": y,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["run", "run_id", "step", "x", "value", "raw"])
    return pd.concat(frames, ignore_index=True)


def summary(
    runs: Sequence[RunRecord],
    metrics: str | Sequence[str],
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Final and best values side by side (best = highest for accuracy, lowest otherwise); with
    several metrics, a final and a best column for each."""
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    one = len(names) == 1
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run": labels[r.id] if labels else run_label(r),
            "status": r.status,
        }
        for metric in names:
            m = r.metrics.get(metric)
            prefix = "" if one else f"{metric} "
            row[prefix + "final"] = None if m is None else m.value
            row[prefix + "best"] = (
                None if m is None else (m.max if higher_is_better(metric) else m.min)
            )
            if one:
                row["at step"] = None if m is None else m.step
        row["bytes sent"] = r.metrics[BYTES_SENT].value if BYTES_SENT in r.metrics else None
        row["duration (s)"] = None if r.duration is None else round(r.duration, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def params_table(runs: Sequence[RunRecord], labels: dict[str, str] | None = None) -> pd.DataFrame:
    keys = differing_params(runs) or ["optimizer.algorithm"]
    named = labels or {r.id: run_label(r) for r in runs}
    return pd.DataFrame(
        {named[r.id]: [shown_value(params_of(r).get(k)) for k in keys] for r in runs}, index=keys
    )


def shown_value(value: Any) -> str | None:
    """A parameter as a table cell or a label shows it (one column may hold numbers and
    words); None where the run has none."""
    value = param_value(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_of(run: RunRecord) -> dict[str, Any]:
    """A run's configuration rebuilt from its parameters (for runs whose directory is gone)."""
    import yaml

    out: dict[str, Any] = {}
    for key, value in run.params.items():
        if key in ("workers", "hosts"):
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node[leaf] = None
            continue
        try:
            node[leaf] = yaml.safe_load(value) if value[:1] in "[{" else json.loads(value)
        except (ValueError, yaml.YAMLError):
            node[leaf] = value
    return out


def system_curves(
    histories: dict[tuple[str, str], list[MetricPoint]], run_id: str, keys: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Per system field (cpu_percent, memory_mb...), a long table (run, x, value) whose series
    are the ranks: `system/rank_R/FIELD` keys, as training.run.system_metrics names them."""
    found: dict[str, list[pd.DataFrame]] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "system" or not parts[1].startswith("rank_"):
            continue
        if not parts[1][5:].isdigit():
            continue
        points = [p for p in histories.get((run_id, key), []) if p.value is not None]
        if points:
            steps = [float(p.step) for p in points]
            found.setdefault(parts[2], []).append(
                pd.DataFrame(
                    {
                        "run": parts[1].replace("_", " "),
                        "step": steps,
                        "x": steps,
                        "value": [p.value for p in points],
                    }
                )
            )
    return {
        field: pd.concat(
            sorted(frames, key=lambda f: int(f["run"].iat[0].split()[1])), ignore_index=True
        )
        for field, frames in found.items()
    }


# How a group's runs spread around their mean curve (Compare's "Band").
BANDS = {"std": "Mean ± 1 std", "minmax": "Min to max", "none": "Mean only"}


def group_of(run: RunRecord, keys: Sequence[str]) -> str:
    """A run's group when runs are grouped by the parameters `keys` (a parameter a run's
    algorithm does not use reads "-"), e.g. "algorithm=easgd, tau=4"."""
    used = params_of(run)
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={used.get(k, '-')}" for k in keys)


def grouped_curves(
    data: pd.DataFrame, runs: Sequence[RunRecord], keys: Sequence[str], band: str = "std"
) -> pd.DataFrame:
    """The mean curve of each group of runs (same values of `keys`) and its band, from the long
    table `curves` returns: columns run (the group and its size), x, value (the mean), lo, hi,
    runs (how many runs the point averages) and of (how many runs the group has).

    Each run's curve is taken on the straight line between its points, at every x any run of
    its group recorded, and only inside the x it covers: at each x the mean is over the runs
    that have a value there, as W&B's groups are, so a seed that has just started, or that
    stopped early, neither hides the group nor pulls its mean outside its own range (the
    legend says "2 of 3 runs" there). The standard deviation is the sample one (n - 1), as the
    fidelity report's; where one run has a value there is no band.
    """
    if band not in BANDS:
        raise ValueError(f"band: one of {', '.join(BANDS)} (received: {band!r})")
    columns = ["run", "x", "value", "lo", "hi", "runs", "of"]
    if data.empty:
        return pd.DataFrame(columns=columns)
    members: dict[str, list[str]] = {}
    for r in runs:
        members.setdefault(group_of(r, keys), []).append(r.id)
    frames = []
    for group, ids in members.items():
        own = []
        for i in ids:
            f = data[data["run_id"] == i]
            x, y = _sorted_xy(f["x"].to_numpy(float), f["value"].to_numpy(float))
            if len(x):
                own.append((x, y))
        if not own:
            continue
        xs = np.unique(np.concatenate([x for x, _ in own]))
        stack = np.vstack(
            [np.where((xs >= x[0]) & (xs <= x[-1]), np.interp(xs, x, y), np.nan) for x, y in own]
        )
        count = np.isfinite(stack).sum(axis=0)
        mean = np.nanmean(stack, axis=0)
        lo = hi = np.full(len(xs), np.nan)
        several = count > 1
        if band != "none" and several.any():
            with np.errstate(invalid="ignore"):
                if band == "std":
                    spread = np.nanstd(stack[:, several], axis=0, ddof=1)
                    edges = mean[several] - spread, mean[several] + spread
                else:
                    edges = (
                        np.nanmin(stack[:, several], axis=0),
                        np.nanmax(stack[:, several], axis=0),
                    )
            lo, hi = lo.copy(), hi.copy()
            lo[several], hi[several] = edges
        size = len(ids)
        label = f"{group or 'all runs'} ({size} run{'' if size == 1 else 's'})"
        frames.append(
            pd.DataFrame(
                {"run": label, "x": xs, "value": mean, "lo": lo, "hi": hi, "runs": count}
            ).assign(of=size)
        )
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def _sorted_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind="stable")
    return x[keep][order], y[keep][order]


def higher_is_better(metric: str) -> bool:
    """Accuracy goes up; loss, time and bytes go down (the rule `summary` ranks by)."""
    return "accuracy" in metric
