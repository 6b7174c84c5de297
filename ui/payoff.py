"""Did communicating less pay off? Each compared run's cost to first reach a target value of a
metric (steps, seconds of training, bytes sent), its ratios against a baseline run, and the
answer in words: Compare's first table. Pure functions of the runs' metric histories.

No tracking UI answers this for distributed training: a learning curve against steps hides the
bytes, one against bytes hides the seconds, and a user is left to read three charts at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from db.entities import MetricPoint, RunRecord
from training.run.metrics import BYTES_SENT, TRAIN_SECONDS
from training.schema.algorithms import BASELINE
from ui.shaping import higher_is_better

# What a history lookup needs for every run: the metric, and the counters read at its crossing.
COUNTERS = (BYTES_SENT, TRAIN_SECONDS)
# The table's ratio columns (shown as "0.25x").
RATIO_COLUMNS = ("steps ×", "time ×", "bytes ×")
# Ratios within this of 1 read "about the same".
SAME = 0.05


@dataclass(frozen=True)
class Cost:
    """What one run spent to first reach the target (None: it never did, or did not record it).
    Its seconds are training time where the run counted it (`train_seconds`), else wall time."""

    run_id: str
    label: str
    step: int | None
    train_seconds: float | None
    wall_seconds: float | None
    bytes: float | None
    best: float | None  # the best value the run recorded

    @property
    def wall(self) -> bool:
        """Timed by the wall clock: the run reached the target but counted no training time."""
        return self.reached and self.train_seconds is None

    @property
    def seconds(self) -> float | None:
        return self.wall_seconds if self.wall else self.train_seconds

    def clock(self, other: Cost | None) -> tuple[float | None, bool]:
        """Seconds to compare with `other`'s: training seconds when both counted them, else
        wall seconds for both (one run's training time against another's wall time says
        nothing)."""
        if self.wall or (other is not None and other.wall):
            return self.wall_seconds, True
        return self.seconds, False

    @property
    def reached(self) -> bool:
        return self.step is not None


def _values(points: Sequence[MetricPoint]) -> list[MetricPoint]:
    return [p for p in points if p.value is not None and math.isfinite(p.value)]


def first_reaching(
    points: Sequence[MetricPoint], target: float, higher: bool
) -> MetricPoint | None:
    """The first recorded point at or beyond `target` (raw values: no smoothing)."""
    for p in sorted(_values(points), key=lambda p: p.step):
        if (p.value >= target) if higher else (p.value <= target):
            return p
    return None


def _counter_at(points: Sequence[MetricPoint], step: int) -> float | None:
    """A counter that grows with the step (bytes, training seconds) at `step`: its own value
    there, else the straight line between the points around it; None outside what it recorded."""
    known = sorted(_values(points), key=lambda p: p.step)
    if not known or not known[0].step <= step <= known[-1].step:
        return None
    return float(np.interp(step, [p.step for p in known], [p.value for p in known]))


def costs(
    histories: Mapping[tuple[str, str], Sequence[MetricPoint]],
    runs: Sequence[RunRecord],
    labels: Mapping[str, str],
    metric: str,
    target: float,
) -> list[Cost]:
    higher = higher_is_better(metric)
    out = []
    for r in runs:
        points = _values(histories.get((r.id, metric), []))
        hit = first_reaching(points, target, higher)
        if hit is None:
            out.append(Cost(r.id, labels[r.id], None, None, None, None, _best(points, higher)))
            continue
        trained = _counter_at(histories.get((r.id, TRAIN_SECONDS), []), hit.step)
        sent = _counter_at(histories.get((r.id, BYTES_SENT), []), hit.step)
        wall = hit.wall_time
        if hit.step == 0:  # reached before any training: nothing was spent
            trained, sent, wall = 0.0, 0.0, 0.0
        out.append(Cost(r.id, labels[r.id], hit.step, trained, wall, sent, _best(points, higher)))
    return out


def _best(points: Sequence[MetricPoint], higher: bool) -> float | None:
    """The best of a run's finite values (highest or lowest); None without any."""
    return (max if higher else min)((p.value for p in points), default=None)


def default_target(
    histories: Mapping[tuple[str, str], Sequence[MetricPoint]],
    runs: Sequence[RunRecord],
    metric: str,
) -> float | None:
    """The best value the weakest run reached, to two significant figures on the easy side: the
    hardest target every run meets, so that every run has a cost to compare."""
    higher = higher_is_better(metric)
    found = (_best(_values(histories.get((r.id, metric), [])), higher) for r in runs)
    bests = [b for b in found if b is not None]
    if not bests:
        return None
    weakest = min(bests) if higher else max(bests)
    return _two_figures(weakest, down=higher)


def _two_figures(value: float, down: bool) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    scale = 10 ** (math.floor(math.log10(abs(value))) - 1)
    # 0.29 / 0.01 is 28.999...: rounded to 9 places first, it is 29, not 28.
    rounded = (math.floor if down else math.ceil)(round(value / scale, 9)) * scale
    return float(f"{rounded:.12g}")


def default_baseline(runs: Sequence[RunRecord]) -> str | None:
    """Synchronous SGD when one of the runs is (the algorithm EASGD saves communication
    against), else the first run."""
    for r in runs:
        if r.params.get("optimizer.algorithm") == BASELINE:
            return r.id
    return runs[0].id if runs else None


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return value / base


def table(found: Sequence[Cost], baseline: str | None) -> pd.DataFrame:
    """One row per run: what it spent to reach the target and its ratios to the baseline's."""
    base = next((c for c in found if c.run_id == baseline), None)
    rows = []
    for c in found:
        rows.append(
            {
                "run": c.label + (" (baseline)" if c.run_id == baseline else ""),
                "reached at step": c.step,
                "time (s)": c.seconds,
                "clock": None if c.seconds is None else "wall" if c.wall else "training",
                "bytes sent": c.bytes,
                "steps ×": _ratio(c.step, base.step if base else None),
                "time ×": _ratio(c.clock(base)[0], base.clock(c)[0] if base else None),
                "bytes ×": _ratio(c.bytes, base.bytes if base else None),
                "best": c.best,
            }
        )
    return pd.DataFrame(rows)


def _times(r: float) -> str:
    return f"{r:.2g}x" if r < 10 else f"{r:.0f}x"


def verdicts(found: Sequence[Cost], baseline: str | None, target: float) -> list[str]:
    """The table in words, one line per run but the baseline: what it saved and what it paid,
    e.g. "easgd reached 0.45 with 0.25x sync's bytes but 1.4x its training seconds"."""
    base = next((c for c in found if c.run_id == baseline), None)
    goal = f"{target:.4g}"
    if base is None:
        return []
    if not base.reached:
        best = "" if base.best is None else f" (its best: {base.best:.4g})"
        return [
            f"The baseline {base.label} did not reach {goal}{best}: lower the target or pick "
            "another baseline."
        ]
    lines = []
    for c in found:
        if c.run_id == baseline:
            continue
        if not c.reached:
            best = "" if c.best is None else f" (its best: {c.best:.4g})"
            lines.append(f"{c.label} did not reach {goal}{best}.")
            continue
        mine, wall = c.clock(base)
        seconds = "wall seconds" if wall else "training seconds"
        parts = []
        for what, value, of in (
            ("bytes", c.bytes, base.bytes),
            (seconds, mine, base.clock(c)[0]),
            ("steps", c.step, base.step),
        ):
            r = _ratio(value, of)
            if r is not None:
                parts.append((r, what))
        if not parts:
            lines.append(f"{c.label} reached {goal}, as {base.label} did at its start.")
            continue
        saved = [p for p in parts if p[0] < 1 - SAME]
        paid = [p for p in parts if p[0] > 1 + SAME]
        same = [p for p in parts if p not in saved and p not in paid]

        def said(group, first: bool) -> str:
            whose = f"{base.label}'s" if first else "its"
            return " and ".join(
                f"{_times(r)} {whose if i == 0 else 'its'} {what}"
                for i, (r, what) in enumerate(group)
            )

        text = f"{c.label} reached {goal}"
        if saved:
            text += f" with {said(saved, True)}"
        if paid:
            text += (" but " if saved else " with ") + said(paid, not saved)
        if same:
            whats = " and ".join(w for _, w in same)
            text += (
                f", and about the same {whats}"
                if saved or paid
                else f" with about the same {whats} as {base.label}"
            )
        lines.append(text + ".")
    return lines
