"""Early stopping of poor trials, judged on the sweep's metric at each recorded value (for
center_accuracy, each evaluation): the driver passes every trial's curve, these rules say which
running trials to stop and why.

- hyperband (W&B's rule, as its sweeps package computes it): at brackets min_iter x eta^k (or
  max_iter / eta^k, s of them), each trial's k-th value (k a bracket) is taken from every trial
  that recorded k values; sorted from best to worst, the one at position int(n / eta) is the
  threshold (so n / eta rounded down, plus one, are kept). A running trial whose best value so
  far is worse than the threshold of the last bracket it reached is stopped. Missing and
  non-finite values are left out, as W&B leaves them out. A trial that reached a bracket before
  the others did is judged again as they arrive.
- median (as Optuna's MedianPruner): from its min_iter-th value on, a running trial whose best
  value so far is worse than the median of the succeeded trials' values at the same iteration
  is stopped, once min_trials succeeded trials reached it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from service.sweeps.spec import EarlyTerminate


@dataclass
class Curve:
    """One trial's metric in the order it was recorded (non-finite values are None)."""

    number: int
    running: bool
    succeeded: bool
    values: list[float | None]


def to_stop(rule: EarlyTerminate, metric: str, goal: str, curves: list[Curve]) -> dict[int, str]:
    """{trial number: why} for the running trials the rule stops now."""
    sign = 1.0 if goal == "maximize" else -1.0
    scored = {c.number: [_score(v, sign) for v in c.values] for c in curves}
    if rule.type == "hyperband":
        return _hyperband(rule, metric, sign, curves, scored)
    return _median(rule, metric, sign, curves, scored)


def _score(value: float | None, sign: float) -> float:
    """Higher is better whatever the goal; a missing or non-finite value is the worst."""
    if value is None or not math.isfinite(value):
        return -math.inf
    return sign * value


def _hyperband(rule, metric, sign, curves, scored) -> dict[int, str]:
    # W&B's terms: lower is better, invalid values dropped.
    loss = {n: [-v for v in s if math.isfinite(v)] for n, s in scored.items()}
    thresholds = []
    for b in rule.brackets():
        there = sorted(h[b - 1] for h in loss.values() if len(h) >= b)
        thresholds.append((b, there[int(len(there) / rule.eta)] if there else math.inf, len(there)))
    out = {}
    for c in curves:
        history = loss[c.number]
        reached = [t for t in thresholds if t[0] <= len(history)]
        if not c.running or not reached:
            continue
        b, threshold, n = reached[-1]
        if min(history) > threshold:
            out[c.number] = (
                f"best {metric} so far {_shown(-sign * min(history))} is outside the best "
                f"1/{rule.eta:g} of the {n} trials at iteration {b} (the last kept: "
                f"{_shown(-sign * threshold)})"
            )
    return out


def _median(rule, metric, sign, curves, scored) -> dict[int, str]:
    out = {}
    for c in curves:
        k = len(c.values)
        if not c.running or k < rule.min_iter:
            continue
        others = [scored[d.number][k - 1] for d in curves if d.succeeded and len(d.values) >= k]
        if len(others) < rule.min_trials:
            continue
        median = statistics.median(others)
        best = max(scored[c.number])
        if best < median:
            out[c.number] = (
                f"best {metric} {_shown(sign * best)} by iteration {k} is worse than the median "
                f"{_shown(sign * median)} of the {len(others)} succeeded trials there"
            )
    return out


def _shown(value: float | None) -> str:
    return "none" if value is None or not math.isfinite(value) else f"{value:.4g}"
