"""NumPy transcription of consensus SGD over a fixed topology, from the paper, not from the code.

Jiang, Balu, Hegde & Sarkar, "Collaborative Deep Learning in Fixed Topology Networks" (NIPS 2017):

    CDSGD:   x^j_{k+1} = sum_{l in Nb(j)} pi_jl x^l_k - alpha g_j(x^j_k)
    CDMSGD:  v^j_{k+1} = sum_{l in Nb(j)} pi_jl x^l_k - alpha g_j(x^j_k)
             x^j_{k+1} = v^j_{k+1} + mu (v^j_{k+1} - v^j_k),        v^j_0 = x^j_0

with Metropolis-Hastings weights pi_jl = 1 / (1 + max(d_j, d_l)) for neighbours l != j and
pi_jj = 1 - sum_{l != j} pi_jl. All workers at once: X holds one row per worker, so a step is
X <- PI X - alpha G(X).

Problem: worker j minimises 0.5 * mean((A_j x - b_j)^2) on its own rows, full batch, so every
step is deterministic.
"""

from __future__ import annotations

import numpy as np

DIM = 6
ROWS = 12


def data(workers: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """A: (workers, ROWS, DIM), b: (workers, ROWS); worker j's rows differ from the others'."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(workers, ROWS, DIM)) + np.arange(workers)[:, None, None] * 0.1
    b = rng.normal(size=(workers, ROWS))
    return a, b


def start(seed: int = 5) -> np.ndarray:
    """The root's initial weights, which every worker starts from."""
    return np.random.default_rng(seed).uniform(-1, 1, size=DIM)


def gradients(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row j: the gradient of worker j's loss at its own x_j."""
    residual = np.einsum("jrd,jd->jr", a, x) - b
    return np.einsum("jrd,jr->jd", a, residual) / a.shape[1]


def graph(name: str, workers: int) -> np.ndarray:
    """The adjacency matrix (0/1, no self loops) of a ring or the complete graph."""
    adjacency = np.zeros((workers, workers))
    for j in range(workers):
        for other in range(workers):
            if name == "full" or (other - j) % workers in (1, workers - 1):
                adjacency[j, other] = 1.0
    np.fill_diagonal(adjacency, 0.0)
    return adjacency


def metropolis_hastings(adjacency: np.ndarray) -> np.ndarray:
    degree = adjacency.sum(axis=1)
    pi = adjacency / (1.0 + np.maximum(degree[:, None], degree[None, :]))
    return pi + np.diag(1.0 - pi.sum(axis=1))


def mixing(topology, workers: int) -> np.ndarray:
    if isinstance(topology, str):
        return metropolis_hastings(graph(topology, workers))
    return np.asarray(topology, dtype=float)


def run(
    pi: np.ndarray,
    steps: int,
    lr: float,
    momentum: float | None = None,
    compression: str = "none",
) -> dict[str, np.ndarray]:
    """CDSGD (momentum None) or CDMSGD for `steps` steps on `len(pi)` workers: every worker's
    weights at the end, and their mean (the model a consensus run evaluates).

    `compression`: the mixing is CHOCO-SGD's gossip with consensus step 1 (Koloskova, Stich &
    Jaggi 2019, Algorithm 1): every worker holds a public copy c_l of each worker's x, worker l
    sends q_l = Q(x_l - c_l), everyone adds it to c_l, and x_j <- x_j + sum_l pi_jl (c_l - c_j),
    which is PI X when the copies are exact."""
    from tests.training.reference import quantize

    workers = len(pi)
    a, b = data(workers)
    x = np.tile(start(), (workers, 1))
    v = x.copy()
    copies = x.copy()
    for _ in range(steps):
        mixed = pi @ x
        if compression != "none":
            copies = copies + np.stack([quantize(r, compression) for r in x - copies])
            mixed = x + pi @ copies - copies
        step = mixed - lr * gradients(x, a, b)
        if momentum is None:
            x = step
        else:
            x, v = step + momentum * (step - v), step
    return {"workers": x, "mean": x.mean(axis=0)}


def consensus_distance(x: np.ndarray) -> float:
    """Mean over workers of the squared distance to the workers' mean."""
    return float(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=1)))
