"""The stability analysis' matrices are the equations, and its verdicts on the cases the paper
settles by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.stability import analysis, cycle_map, spectral_radius


def _iterate(p: int, eta: float, alpha: float, order: str, start: np.ndarray) -> np.ndarray:
    """One cycle, written out scalar by scalar as the paper writes a worker's turn."""
    x, c = list(start[:p]), start[p]
    if order == "round_robin":
        for j in range(p):
            e = alpha * (x[j] - c)
            x[j] = x[j] - eta * x[j] - e
            c = c + e
    else:
        e = [alpha * (xj - c) for xj in x]
        x = [xj - eta * xj - ej for xj, ej in zip(x, e)]
        c = c + sum(e)
    return np.array([*x, c])


@pytest.mark.parametrize("order", ["round_robin", "simultaneous"])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_the_matrix_is_one_cycle_of_the_equations(order, p):
    rng = np.random.default_rng(p)
    for _ in range(5):
        start = rng.normal(size=p + 1)
        eta, alpha = rng.uniform(0, 2), rng.uniform(-0.2, 1.2)
        assert np.allclose(
            cycle_map(p, eta, alpha, order) @ start, _iterate(p, eta, alpha, order, start)
        )


def test_one_worker_is_stable_exactly_inside_the_bound():
    """p = 1: trace 2 - eta - 2 alpha, determinant 1 - eta - 2 alpha + eta alpha; Jury's
    conditions give eta alpha > 0 and alpha (4 - eta) < 4 - 2 eta, the paper's bound."""
    eta = 0.5
    bound = (4 - 2 * eta) / (4 - eta)
    assert spectral_radius(cycle_map(1, eta, 0.999 * bound, "round_robin")) < 1
    assert spectral_radius(cycle_map(1, eta, 1.001 * bound, "round_robin")) > 1
    assert spectral_radius(cycle_map(1, eta, -0.01, "round_robin")) > 1
    assert analysis(workers=(1,))["round_robin/p1"]["stable_iff_inside"]


def test_the_simultaneous_order_leaves_the_bound_behind():
    # Two workers both pulling with alpha = 0.95 (beta = 1.9) at eta = 0.05: inside the
    # round-robin bound, unstable when the pulls are simultaneous.
    assert spectral_radius(cycle_map(2, 0.05, 0.95, "round_robin")) < 1
    assert spectral_radius(cycle_map(2, 0.05, 0.95, "simultaneous")) > 1
    assert not analysis(workers=(2,))["simultaneous/p2"]["stable_iff_inside"]
