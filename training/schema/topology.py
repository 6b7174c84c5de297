"""Mixing matrices for consensus SGD over a fixed topology (CDSGD and CDMSGD, Jiang, Balu,
Hegde & Sarkar, NIPS 2017).

Worker j mixes its neighbours' weights with its row of a doubly stochastic matrix pi:
sum_l pi[j][l] x_l. A topology is ``ring`` or ``full``, whose matrix has the Metropolis-Hastings
weights of its graph, pi_jl = 1 / (1 + max(d_j, d_l)) for each neighbour l of j (d the degrees)
and pi_jj = 1 - sum of the others, or an explicit p x p matrix written as a list of rows.

Plain Python, no NumPy: the configuration schema imports it to validate a matrix before any
process starts; the optimizer builds the matrix once it knows the number of workers.
"""

from __future__ import annotations

import math
from typing import Any

NAMED = ("ring", "full")
# An explicit matrix is written out in the configuration: 64 x 64 is 4,096 values (a
# configuration holds at most 10,000); larger jobs use a named topology.
MAX_SIZE = 64
# How far a row or column sum may be from 1: weights such as 1/3 written with 7 digits pass.
TOLERANCE = 1e-6

Matrix = list[list[float]]


class TopologyError(ValueError):
    """A topology that cannot be used; the message is the reason, without the field's name."""


def neighbours(name: str, workers: int) -> list[set[int]]:
    """Each worker's neighbours (itself excluded) in a named topology. A ring of 2 is the single
    edge 0-1 and a ring of 3 is the triangle: both are the full graph."""
    if name == "full":
        return [set(range(workers)) - {j} for j in range(workers)]
    if name == "ring":
        return [{(j - 1) % workers, (j + 1) % workers} - {j} for j in range(workers)]
    raise TopologyError(f"unknown topology {name!r}; use one of {', '.join(NAMED)}")


def metropolis_hastings(graph: list[set[int]]) -> Matrix:
    """The Metropolis-Hastings weights of an undirected graph given by each node's neighbours."""
    degree = [len(n) for n in graph]
    matrix = []
    for j, near in enumerate(graph):
        row = [0.0] * len(graph)
        for k in near:
            row[k] = 1.0 / (1 + max(degree[j], degree[k]))
        row[j] = 1.0 - sum(row)
        matrix.append(row)
    return matrix


def parse(value: Any) -> str | Matrix:
    """A topology as the schema accepts it: a name, or a valid matrix (floats). Raises
    TopologyError with the reason."""
    if isinstance(value, str):
        if value not in NAMED:
            raise TopologyError(
                "should be 'ring', 'full' or a square mixing matrix written as a list of rows"
            )
        return value
    if not isinstance(value, list | tuple):
        raise TopologyError(
            "should be 'ring', 'full' or a square mixing matrix written as a list of rows"
        )
    return check_matrix(value)


def check_matrix(rows: Any) -> Matrix:
    """A square, non-negative, finite, doubly stochastic matrix of at most MAX_SIZE rows, as
    floats; otherwise TopologyError naming the first entry, row or column that is wrong."""
    n = len(rows)
    if n == 0:
        raise TopologyError("the mixing matrix has no rows")
    if n > MAX_SIZE:
        raise TopologyError(
            f"a mixing matrix has at most {MAX_SIZE} rows, this one has {n}; use ring or full "
            "for more workers"
        )
    matrix: Matrix = []
    for j, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != n:
            got = f"{len(row)} entries" if isinstance(row, list | tuple) else "not a list"
            raise TopologyError(
                f"row {j} has {got} and the matrix {n} rows; a mixing matrix is square"
            )
        out = []
        for k, w in enumerate(row):
            if isinstance(w, bool) or not isinstance(w, int | float):
                raise TopologyError(f"entry [{j}][{k}] is not a number")
            try:
                finite = math.isfinite(w)
            except OverflowError:  # an integer past any float
                finite = False
            if not finite:
                raise TopologyError(f"entry [{j}][{k}] is not finite")
            if w < 0:
                raise TopologyError(f"entry [{j}][{k}] is negative ({w:g}); weights are >= 0")
            out.append(float(w))
        matrix.append(out)
    sums = [("row", j, sum(matrix[j])) for j in range(n)]
    sums += [("column", k, sum(row[k] for row in matrix)) for k in range(n)]
    for kind, i, total in sums:
        if abs(total - 1.0) > TOLERANCE:
            raise TopologyError(
                f"{kind} {i} sums to {total:.7g}, not 1: a mixing matrix must be doubly "
                f"stochastic (every row and column summing to 1, within {TOLERANCE:g})"
            )
    return matrix


def mixing_matrix(topology: str | Matrix, workers: int) -> Matrix:
    """The matrix for `workers` workers: Metropolis-Hastings weights of a named topology, or the
    explicit matrix, which must have one row per worker."""
    if isinstance(topology, str):
        return metropolis_hastings(neighbours(topology, workers))
    matrix = check_matrix(topology)
    if len(matrix) != workers:
        n = len(matrix)
        raise TopologyError(
            f"a {n} x {n} mixing matrix needs {n} workers, and this job has {workers}; run it "
            f"with {n} workers, or use ring or full"
        )
    return matrix


def connected(matrix: Matrix) -> bool:
    """Whether the graph of the non-zero weights (in either direction) is connected: otherwise
    workers in different parts never agree."""
    n = len(matrix)
    seen, todo = {0}, [0]
    while todo:
        j = todo.pop()
        for k in range(n):
            if k not in seen and (matrix[j][k] > 0 or matrix[k][j] > 0):
                seen.add(k)
                todo.append(k)
    return len(seen) == n
