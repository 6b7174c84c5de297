"""Chart payloads, pure functions of shaped data; `ui.curve_view` draws them in the browser."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.metrics import BYTES_SENT, EPOCH
from ui.shaping import X_AXES

# How the browser formats an axis's values (ui/assets/curves.js): numbers by magnitude, bytes
# in decimal units, seconds with the digits that matter at their size.
X_KINDS = {"step": "number", EPOCH: "number", "wall_time": "seconds", BYTES_SENT: "bytes"}
Y_KINDS = {BYTES_SENT: "bytes"}


def curve_chart(
    data: pd.DataFrame,
    metric: str,
    x_axis: str = "step",
    log_scale: bool = False,
    height: int = 380,
) -> dict[str, Any]:
    """One series per run from the long table `ui.shaping.curves` returns.

    Points are sorted by x and stripped of values JSON cannot carry (NaN, infinities); on a log
    scale values <= 0 are dropped too, since they have no place on it.
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
        if len(xs):
            series.append({"label": str(label), "x": xs.tolist(), "y": ys.tolist()})
    return {
        "series": series,
        "x_label": X_AXES[x_axis],
        "x_kind": X_KINDS[x_axis],
        "y_label": metric,
        "y_kind": Y_KINDS.get(metric, "number"),
        "log": bool(log_scale),
        "height": int(height),
    }
