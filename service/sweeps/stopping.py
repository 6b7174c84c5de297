"""Early stopping of poor trials, judged on the sweep's metric at each recorded value (for
center_accuracy, each evaluation): the driver passes every trial's curve, these rules say which
running trials to stop and why.

- hyperband (W&B's keys): at brackets min_iter x eta^k (or max_iter / eta^k, s of them), a
  running trial whose value at the last bracket it reached is below the best 1/eta of the values
  every trial of the sweep had there (at least one is kept) is stopped. A trial that reached a
  bracket before the others did is judged again as they arrive.
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
    brackets = rule.brackets()
    thresholds = {}
    for b in brackets:
        there = sorted((s[b - 1] for s in scored.values() if len(s) >= b), reverse=True)
        if not there:
            break
        keep = max(1, math.ceil(len(there) / rule.eta))
        thresholds[b] = (there[keep - 1], len(there))
    out = {}
    for c in curves:
        reached = [b for b in thresholds if len(c.values) >= b]
        if not c.running or not reached:
            continue
        b = reached[-1]
        threshold, n = thresholds[b]
        if scored[c.number][b - 1] < threshold:
            out[c.number] = (
                f"{metric} {_shown(c.values[b - 1])} at iteration {b} is outside the best "
                f"1/{rule.eta:g} of the {n} trials there (the last kept: {_shown(sign * threshold)})"
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
