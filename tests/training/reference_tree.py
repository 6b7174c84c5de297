"""NumPy reference of Tree EASGD, written from the equations (docs/algorithms/tree.md), not the code.

Problem: least squares per worker with an intercept, loss_i(w) = 0.5 * mean((A_i w - b_i)^2) where
A_i's last column is ones (a Dense layer's kernel and bias), full batch, so every step is exact.
The inner step is written in the paper's (x, v) form: Nesterov momentum evaluates the gradient at
the look-ahead point x + delta v and the elastic pull acts on x.
"""

from __future__ import annotations

import numpy as np

from tests.training.reference import Sender

DIM = 5  # inputs; the weights are DIM + 1 numbers (the bias last)
ROWS = 12


def problem(rank: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 100 * rank)
    a = np.concatenate([rng.normal(size=(ROWS, DIM)), np.ones((ROWS, 1))], axis=1)
    b = rng.normal(size=(ROWS, 1)) + rank  # workers disagree: the centers matter
    return a, b


def initial_weights(seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(DIM + 1, 1))


def grad(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.T @ (a @ w - b) / a.shape[0]


def run(
    workers: int,
    group_size: int,
    steps: int,
    lr: float,
    tau: int,
    tau_root: int,
    beta: float = 0.9,
    beta_root: float = 0.9,
    momentum: float = 0.0,
    compression: str = "none",
) -> dict[str, np.ndarray]:
    """Synchronous Tree EASGD from the same start everywhere. On the step with 0-based index t:

        level 1, if t mod tau == 0, in each group g:  d_i = alpha (x_i - c_g)
        level 2, if t mod tau_root == 0:              e_g = alpha_root (c_g - c)
        x_i <- x_i - d_i + (the inner step from x_i)
        c_g <- c_g + sum_{i in g} d_i - e_g
        c   <- c + sum_g e_g

    with alpha = beta / group_size and alpha_root = beta_root / groups, every force computed from
    the values before the step. `momentum` > 0: EAMSGD's Nesterov step v <- delta v -
    lr g(x + delta v), x <- x + v; else plain SGD. `compression`: each d_i and each e_g is what
    its sender's `Sender` delivers (codes of the value plus what rounding lost before), applied
    alike by the sender and its receivers.
    """
    groups = workers // group_size
    alpha, alpha_root = beta / group_size, beta_root / groups
    data = [problem(r) for r in range(workers)]
    x0 = initial_weights()
    xs = [x0.copy() for _ in range(workers)]
    vs = [np.zeros_like(x0) for _ in range(workers)]
    group_centers = [x0.copy() for _ in range(groups)]
    root = x0.copy()
    pull_senders = [Sender(compression, x0) for _ in range(workers)]
    push_senders = [Sender(compression, x0) for _ in range(groups)]
    for t in range(steps):
        grads = [grad(xs[i] + momentum * vs[i], *data[i]) for i in range(workers)]
        pulls = [
            pull_senders[i](alpha * (xs[i] - group_centers[i // group_size]))
            if t % tau == 0
            else np.zeros_like(x0)
            for i in range(workers)
        ]
        pushes = [
            push_senders[g](alpha_root * (c - root)) if t % tau_root == 0 else np.zeros_like(x0)
            for g, c in enumerate(group_centers)
        ]
        for i in range(workers):
            vs[i] = momentum * vs[i] - lr * grads[i]
            xs[i] = xs[i] - pulls[i] + vs[i]
        group_centers = [
            group_centers[g] + sum(pulls[g * group_size : (g + 1) * group_size]) - pushes[g]
            for g in range(groups)
        ]
        root = root + sum(pushes)
    return {
        "workers": np.stack(xs),
        "velocities": np.stack(vs),
        "group_centers": np.stack(group_centers),
        "root": root,
    }


def rounds(steps: int, tau: int, tau_root: int) -> tuple[int, int]:
    """Steps on which level 1 and level 2 run."""
    return (
        sum(1 for t in range(steps) if t % tau == 0),
        sum(1 for t in range(steps) if t % tau_root == 0),
    )
