"""NumPy transcription of the asynchronous algorithms in the paper's own form, with the fixed
round-robin order of exchanges the deterministic mode enforces (rank 0, 1, ..., p - 1, then rank 0
again), independent of the code and of Keras.

Zhang, Choromanska & LeCun (NeurIPS 2015), Algorithm 1 (asynchronous EASGD), processing by
worker i and the master, repeated:

    x <- x^i
    if tau divides t^i:
        a) x^i <- x^i - alpha (x - x~)
        b) x~  <- x~  + alpha (x - x~)
    x^i <- x^i - eta g^i(x)
    t^i <- t^i + 1

Algorithm 2 (asynchronous EAMSGD) is the same with the momentum step
v^i <- delta v^i - eta g^i(x + delta v^i);  x^i <- x^i + v^i  in the place of the SGD step.

The asynchronous DOWNPOUR of the paper's supplement: after every tau local steps a worker sends
its accumulated update to the master (x~ <- x~ + (x^i - x^i_start)) and restarts from x~; the
master's ADOWNPOUR time average and MVADOWNPOUR moving average are taken at each center update.

A worker's local steps touch only its own variables, so a worker's exchanges are the only place
where the order of workers matters: the transcription runs, round by round, each worker's
exchange and then its local steps up to its next exchange.
"""

from __future__ import annotations

import numpy as np

from tests.training.reference import (
    Sender,
    Worker,
    grad,
    initial_weights,
    problem,
    quantize_parts,
)


def run(
    algorithm: str,
    workers: int,
    steps: int,
    lr: float,
    tau: int,
    beta: float = 0.9,
    inner: str = "sgd",
    momentum: float = 0.0,
    average_rate: float = 0.001,
    compression: str = "none",
    shards: int = 1,
) -> dict[str, np.ndarray]:
    """`compression`: what a worker sends is Q(v + r), its residual r keeping the rest (error
    feedback), and it sees the center through a replica that moves by Q(center - replica) at
    every answer (the server keeps the same replica of each worker's). `shards`: the center
    held in that many contiguous parts, each compressed on its own (the arithmetic of an
    uncompressed center does not depend on its parts)."""
    data = [problem(r) for r in range(workers)]
    x0 = initial_weights()
    ws = [Worker(x0, inner, lr, momentum) for _ in range(workers)]
    send = [Sender(compression, x0, shards) for _ in range(workers)]
    replicas = [x0.copy() for _ in range(workers)]

    def seen(i: int) -> np.ndarray:
        if compression == "none":
            return center
        replicas[i] = replicas[i] + quantize_parts(center - replicas[i], compression, shards)
        return replicas[i]

    center = x0.copy()
    average = x0.copy()
    updates = 0
    alpha = beta / workers
    clocks = [0] * workers
    start = [x0.copy() for _ in range(workers)]
    while any(t < steps for t in clocks):
        for i, (w, d) in enumerate(zip(ws, data)):
            if algorithm == "elastic":
                while clocks[i] < steps:
                    x = w.x.copy()
                    e = np.zeros_like(x)
                    if clocks[i] % tau == 0:
                        e = send[i](alpha * (x - seen(i)))  # a)
                        center = center + e  # b)
                    g = grad(x + w.delta * w.v if w.kind == "nesterov" else x, *d)
                    w.x = w.x - e + w.local_update(g)
                    clocks[i] += 1
                    if clocks[i] % tau == 0:
                        break  # the next exchange waits for the other workers' turns
            else:
                for _ in range(tau):
                    if clocks[i] == steps:
                        break
                    g = grad(w.gradient_point(), *d)
                    w.x = w.x + w.local_update(g)
                    clocks[i] += 1
                if clocks[i] % tau == 0 and clocks[i] > 0:
                    center = center + send[i](w.x - start[i])
                    updates += 1
                    if algorithm == "mvadownpour":
                        average = (1 - average_rate) * average + average_rate * center
                    if algorithm == "adownpour":
                        average = (1 - 1 / (updates + 1)) * average + 1 / (updates + 1) * center
                    w.x = seen(i).copy()
                    start[i] = w.x.copy()
    evaluated = average if algorithm in ("mvadownpour", "adownpour") else center
    return {
        "workers": np.stack([w.x for w in ws]),
        "velocities": np.stack([w.v for w in ws]),
        "center": center,
        "evaluated": evaluated,
    }
