"""The paper's stability claim, checked on the linear map it is about.

Zhang, Choromanska & LeCun (2015, section 4) study EASGD in the round-robin scheme on the
one-dimensional quadratic F(x) = h x^2 / 2 with h = 1: the workers take turns, and worker i's
turn is

    x_i <- x_i - eta x_i - alpha (x_i - c);    c <- c + alpha (x_i - c)

(both with the old x_i and c). They state that this is stable when 0 <= eta <= 2 and
0 <= alpha <= (4 - 2 eta) / (4 - eta). One cycle of p turns is a linear map of (x_1..x_p, c);
it is stable when its spectral radius is below 1. Our `round_robin` order gives every worker
its turn within one step, with the pulls replayed in rank order, which is the same cycle; our
default `simultaneous` order (the paper's synchronous EASGD) is a different map, computed
here too, to show where the bound does not apply.
"""

from __future__ import annotations

import json

import numpy as np

from training.schema import stability_bound


def cycle_map(p: int, eta: float, alpha: float, order: str) -> np.ndarray:
    """The matrix of one cycle on (x_1, .., x_p, c), built turn by turn from the equations."""
    n = p + 1
    state = np.eye(n)  # row k: state variable k as a combination of the cycle's start
    xs, c = [state[j].copy() for j in range(p)], state[p].copy()
    if order == "round_robin":
        for j in range(p):
            e = alpha * (xs[j] - c)
            xs[j] = xs[j] - eta * xs[j] - e
            c = c + e
    elif order == "simultaneous":
        es = [alpha * (x - c) for x in xs]
        xs = [x - eta * x - e for x, e in zip(xs, es)]
        c = c + sum(es)
    else:
        raise ValueError(order)
    return np.stack([*xs, c])


def measured_rate(stdout: str) -> float:
    """The per-step growth rate of (x_1, .., x_p, c) that `bench.stability_run` printed, over the
    second half of its steps (the first half lets the dominant mode take over)."""
    line = next(x for x in stdout.splitlines() if '"norms"' in x)
    norms = json.loads(line[line.index("{") :])["norms"]
    half = len(norms) // 2
    return (norms[-1] / norms[half - 1]) ** (1 / (len(norms) - half))


def spectral_radius(m: np.ndarray) -> float:
    return float(max(abs(np.linalg.eigvals(m))))


ETAS = (0.1, 0.5, 1.0, 1.5, 1.9)
# Multiples of the bound: inside, at its edge from both sides, and well outside.
FACTORS = (-0.05, 0.5, 0.9, 0.99, 1.01, 1.1, 1.5)


def analysis(workers=(1, 2, 3, 4), etas=ETAS, factors=FACTORS) -> dict:
    """For each order and p: every (eta, alpha) point, and the points where "stable exactly when
    0 <= alpha <= bound" fails."""
    out: dict = {}
    for order in ("round_robin", "simultaneous"):
        for p in workers:
            points, exceptions = [], []
            for eta in etas:
                bound = stability_bound(eta)
                for k in factors:
                    alpha = k * bound
                    rho = spectral_radius(cycle_map(p, eta, alpha, order))
                    inside = 0 <= alpha <= bound
                    point = {
                        "eta": eta,
                        "alpha": round(alpha, 6),
                        "factor": k,
                        "rho": round(rho, 6),
                    }
                    points.append(point)
                    if (rho < 1) != inside:
                        exceptions.append(point)
            out[f"{order}/p{p}"] = {
                "points": len(points),
                "stable_iff_inside": not exceptions,
                "exceptions": exceptions,
            }
    return out
