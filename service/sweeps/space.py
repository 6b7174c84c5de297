"""A sweep's search space: each parameter as a dimension, and the grid W&B's rules expand."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dimension:
    """One parameter, resolved: its path, distribution and bounds (or choices)."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    q: float | None = None
    choices: tuple[Any, ...] = ()

    def probes(self) -> list[Any]:
        """Values that stand for every value this dimension can give: its choices, or the ends
        of its range and a point inside (a fraction: an integer field refuses it)."""
        if self.kind in ("constant", "categorical"):
            return list(self.choices)
        if self.kind == "int_uniform":
            return [self.low, self.high]
        if self.kind == "q_uniform":  # and a step from the low end: a fraction, if q is one
            lo, hi = q_bounds(self.low, self.high, self.q)
            steps = [q_round(lo + self.q, self.q)] if lo + self.q <= hi else []
            return [lo, hi, *steps, q_round(lo + 0.37 * (hi - lo), self.q)]
        lo, hi = self.low, self.high
        if self.kind == "log_uniform":
            lo, hi = math.exp(lo), math.exp(hi)
        return [lo, hi, lo + 0.37 * (hi - lo)]


def q_bounds(low: float, high: float, q: float) -> tuple[float, float]:
    return q_round(math.ceil(low / q) * q, q), q_round(math.floor(high / q) * q, q)


def q_round(x: float, q: float) -> float | int:
    """x to the nearest multiple of q, without the binary noise (0.30000000000000004)."""
    v = float(f"{round(x / q) * q:.12g}")
    return int(v) if isinstance(q, int) and v.is_integer() else v


GRID_KINDS = ("constant", "categorical", "int_uniform", "q_uniform")


def grid_count(d: Dimension) -> int:
    """How many values the grid tries of `d`: its choices, or every integer (every multiple
    of q) of its range, as W&B expands them."""
    if d.kind == "int_uniform":
        return d.high - d.low + 1
    if d.kind == "q_uniform":
        lo, hi = q_bounds(d.low, d.high, d.q)
        return round((hi - lo) / d.q) + 1
    return len(d.choices)


def grid_values(d: Dimension) -> tuple[Any, ...]:
    if d.kind == "int_uniform":
        return tuple(range(d.low, d.high + 1))
    if d.kind == "q_uniform":
        lo = q_bounds(d.low, d.high, d.q)[0]
        return tuple(q_round(lo + i * d.q, d.q) for i in range(grid_count(d)))
    return d.choices


def grid_size(dims: list[Dimension]) -> int:
    return math.prod(grid_count(d) for d in dims)


def grid_points(dims: list[Dimension]) -> itertools.product:
    return itertools.product(*(grid_values(d) for d in dims))
