"""NumPy reference of every algorithm's equations, written from DESIGN.md and not from the code.

Problem: least squares per worker, loss_i(x) = 0.5 * mean((A_i x - b_i)^2), full batch, so every
step is deterministic and the optimizer's trajectory can be reproduced exactly.
"""

from __future__ import annotations

import numpy as np

DIM = 5
ROWS = 16


def problem(rank: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1000 * rank)
    a = rng.normal(size=(ROWS, DIM))
    b = rng.normal(size=(ROWS, 1))
    return a, b


def initial_weights(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(DIM, 1))


def grad(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.T @ (a @ x - b) / a.shape[0]


class Inner:
    """The local optimizer as Keras defines it (Nesterov in Keras' look-ahead form)."""

    def __init__(self, kind: str, lr: float, momentum: float = 0.0):
        self.kind, self.lr, self.momentum = kind, lr, momentum
        self.v = None
        self.m = None
        self.t = 0

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self.kind == "sgd":
            return x - self.lr * g
        if self.kind in ("momentum", "nesterov"):
            if self.v is None:
                self.v = np.zeros_like(x)
            self.v = self.momentum * self.v - self.lr * g
            if self.kind == "nesterov":
                return x + self.momentum * self.v - self.lr * g
            return x + self.v
        if self.kind == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-7
            if self.m is None:
                self.m, self.v = np.zeros_like(x), np.zeros_like(x)
            self.t += 1
            self.m = self.m + (g - self.m) * (1 - b1)
            self.v = self.v + (g * g - self.v) * (1 - b2)
            lr = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
            return x - lr * self.m / (np.sqrt(self.v) + eps)
        raise ValueError(self.kind)


def run(
    algorithm: str,
    workers: int,
    steps: int,
    lr: float,
    tau: int = 1,
    beta: float = 0.9,
    inner: str = "sgd",
    momentum: float = 0.0,
    center_momentum: float = 0.9,
    average_rate: float = 0.001,
) -> dict[str, np.ndarray]:
    data = [problem(r) for r in range(workers)]
    x0 = initial_weights()
    xs = [x0.copy() for _ in range(workers)]
    opts = [Inner(inner, lr, momentum) for _ in range(workers)]
    center = x0.copy()
    velocity = np.zeros_like(x0)
    average = x0.copy()
    alpha = beta / workers
    for t in range(steps):
        grads = [grad(xs[i], *data[i]) for i in range(workers)]
        if algorithm == "sync":
            mean = sum(grads) / workers
            grads = [mean] * workers
        if algorithm == "elastic" and t % tau == 0:
            # x_{t+1} = x_t - eta g(x_t) - alpha (x_t - c_t);  c_{t+1} = c_t + sum_i alpha (x_i - c_t)
            diffs = [alpha * (x - center) for x in xs]
            xs = [x - d for x, d in zip(xs, diffs)]
            center = center + sum(diffs)
        xs = [opts[i].step(xs[i], grads[i]) for i in range(workers)]
        if algorithm in ("downpour", "mdownpour", "mvadownpour", "localsgd") and (t + 1) % tau == 0:
            if algorithm == "localsgd":
                center = sum(xs) / workers
            else:
                accumulated = sum(x - center for x in xs)
                if algorithm == "mdownpour":
                    velocity = center_momentum * velocity + accumulated
                    center = center + center_momentum * velocity + accumulated
                else:
                    center = center + accumulated
            xs = [center.copy() for _ in range(workers)]
        if algorithm == "mvadownpour":
            average = (1 - average_rate) * average + average_rate * center
    if algorithm == "sync":
        center = xs[0]
    if algorithm == "mvadownpour":
        return {"workers": np.stack(xs), "center": center, "evaluated": average}
    return {"workers": np.stack(xs), "center": center, "evaluated": center}
