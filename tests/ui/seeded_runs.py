"""Runs written to the store with round numbers, for the browser tests of the pages that show
runs: every value a page shows can be checked against the formula that made it.

Two runs with different grids (bytes per step, seconds per step, evaluation steps), the sync one
recorded as runs were before recording followed the algorithm registry (with a tau), and a third
whose loss went to almost nothing.
"""

from __future__ import annotations

import math

STEPS = 100
# Bytes sent per rank at a step, and seconds since the start: different grids for the two runs.
BYTES_PER_STEP = {"cmp-easgd": 1000.0, "cmp-sync": 4000.0}
SECONDS_PER_STEP = {"cmp-easgd": 0.3713, "cmp-sync": 0.5221}
# Evaluations: easgd at steps 0, 10, ..., 100; sync at 5, 15, ..., 95.
EVAL_STEPS = {"cmp-easgd": range(0, STEPS + 1, 10), "cmp-sync": range(5, STEPS, 10)}
TINY_LOSS = 1.3e-7


def accuracy(run: str, step: float) -> float:
    rate = 30.0 if run == "cmp-easgd" else 22.0
    return 0.62 + 0.35 * (1 - math.exp(-step / rate))


def loss(run: str, step: float) -> float:
    return 0.3 + 2.1 * math.exp(-step / (25.0 if run == "cmp-easgd" else 20.0))


def seed(store) -> None:
    params = {"data.dataset": "digits", "optimizer.learning_rate": 0.05, "seed": 1}
    # The sync run as runs were recorded before recording followed the registry: with a tau.
    for run, algorithm, tau in (("cmp-easgd", "easgd", 4), ("cmp-sync", "sync", 10)):
        store.create_run(
            run,
            name=f"{algorithm}-run",
            params={**params, "optimizer.algorithm": algorithm, "optimizer.tau": tau},
            workers=2,
            total_steps=STEPS,
        )
        rows = []
        for step in range(STEPS + 1):
            wall = SECONDS_PER_STEP[run] * step
            rows += [
                ("train_loss", step, wall, loss(run, step)),
                ("bytes_sent", step, wall, BYTES_PER_STEP[run] * step),
                ("epoch", step, wall, step / 20),
            ]
        rows += [
            ("center_accuracy", s, SECONDS_PER_STEP[run] * s, accuracy(run, s))
            for s in EVAL_STEPS[run]
        ]
        store.log_metrics(run, rows)
        store.finish_run(run, "finished")
    # A run whose loss went to almost nothing: a fixed 4 decimals would show 0.0000.
    store.create_run(
        "cmp-tiny", name="tiny-loss", params={**params, "optimizer.algorithm": "easgd"}
    )
    store.log_metrics(
        "cmp-tiny",
        [("train_loss", 10, 1.0, TINY_LOSS), ("center_accuracy", 10, 1.0, 0.98)]
        + [("bytes_sent", 10, 1.0, 7.5e6)],
    )
    store.finish_run("cmp-tiny", "finished")
