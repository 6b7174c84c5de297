"""Run every asynchronous case in the deterministic (round-robin) order under horovodrun; rank 0
saves each rank's weights and momentum, and the center it evaluated, to a .npz.

Usage: horovodrun -np N -H localhost:N --gloo python tests/training/async_worker.py OUT.npz
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import least_squares  # noqa: E402

from training.exchanges import collectives  # noqa: E402
from training.exchanges.optimizer import (  # noqa: E402
    CenterServerCallback,
    ElasticAveragingOptimizer,
    build_inner,
)

# (label, exchange, inner, momentum, tau, beta, steps[, path]); path "fit": model.fit with the
# optimizer's callback instead of our loop.
CASES = [
    ("easgd-fit-tau3", "elastic", "sgd", 0.0, 3, 0.9, 10, "fit"),
    ("easgd-tau2-b0.9", "elastic", "sgd", 0.0, 2, 0.9, 9),
    ("easgd-tau3-b0.5", "elastic", "sgd", 0.0, 3, 0.5, 10),
    ("eamsgd-tau3-b0.8-d0.9", "elastic", "nesterov", 0.9, 3, 0.8, 10),
    ("eamsgd-tau2-b0.6-d0.99", "elastic", "nesterov", 0.99, 2, 0.6, 9),
    ("downpour-tau2", "downpour", "sgd", 0.0, 2, 0.9, 9),
    ("adownpour-tau3", "adownpour", "sgd", 0.0, 3, 0.9, 10),
    ("mvadownpour-tau2", "mvadownpour", "sgd", 0.0, 2, 0.9, 8),
]
# The center split over servers on several ranks (center_shards; 0: one shard per rank): the
# same arithmetic, so the same reference; and compressed messages both ways.
# (label, ..., steps, path, shards, compression)
MORE = [
    ("easgd-tau2-shards-all", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", 0, "none"),
    ("eamsgd-tau3-shards-2", "elastic", "nesterov", 0.9, 3, 0.8, 10, "loop", 2, "none"),
    ("adownpour-tau3-shards-all", "adownpour", "sgd", 0.0, 3, 0.9, 10, "loop", 0, "none"),
    ("mvadownpour-tau2-shards-2", "mvadownpour", "sgd", 0.0, 2, 0.9, 8, "loop", 2, "none"),
    ("easgd-tau2-int4", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", 1, "int4"),
    ("eamsgd-tau3-int8-shards-2", "elastic", "nesterov", 0.9, 3, 0.8, 10, "loop", 2, "int8"),
    ("downpour-tau2-int4-shards-all", "downpour", "sgd", 0.0, 2, 0.9, 9, "loop", 0, "int4"),
    ("easgd-tau2-float16", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", 1, "float16"),
]
ALL = CASES + MORE
LR = 0.05
AVERAGE_RATE = 0.1


def run_case(
    exchange, inner, momentum, tau, beta, steps, path="loop", shards=1, compression="none"
):
    model, a, b = least_squares.model_and_data()
    opt = ElasticAveragingOptimizer(
        build_inner(inner, LR, momentum),
        tau=tau,
        beta=beta,
        exchange=exchange,
        average_rate=AVERAGE_RATE,
        order="round_robin",
        asynchronous=True,
        center_shards=shards or collectives.size(),
        compression=compression,
    )
    opt.build(model.trainable_variables)
    if path == "fit":
        least_squares.fit(model, opt, a, b, steps, LR, [CenterServerCallback(opt)])
        evaluated = opt.evaluation_variables[0].numpy()
        return _gathered(model, opt, evaluated)
    opt.start_asynchronous()
    step = least_squares.stepper(model, opt, a, b)

    for t in range(steps):
        opt.before_step(t)
        step()
        opt.after_step(t)
    opt.finish_asynchronous()
    evaluated = opt.evaluation_variables[0].numpy()  # rank 0 read them from the server
    collectives.barrier()
    opt.stop_asynchronous()
    return _gathered(model, opt, evaluated)


def _gathered(model, opt, evaluated) -> dict:
    worker = model.layers[0].kernel.numpy()
    velocity = least_squares.slots_of(opt, worker)
    comm = opt.communication()
    return {
        "workers": np.stack(collectives.allgather_object(worker)),
        "velocities": np.stack(collectives.allgather_object(velocity)),
        "evaluated": evaluated,
        "exchanges": collectives.allgather_object(comm["rounds"]),
        "bytes_sent": collectives.allgather_object(comm["bytes_sent"]),
    }


def main(out: str) -> None:
    collectives.init()
    results, meta = {}, {}
    for label, exchange, inner, momentum, tau, beta, steps, *rest in ALL:
        r = run_case(exchange, inner, momentum, tau, beta, steps, *rest)
        for key in ("workers", "velocities", "evaluated"):
            results[f"{label}/{key}"] = r[key]
        meta[label] = {
            "exchange": exchange,
            "inner": inner,
            "momentum": momentum,
            "tau": tau,
            "beta": beta,
            "steps": steps,
            "compression": rest[2] if len(rest) > 2 else "none",
            "exchanges": r["exchanges"],
            "bytes_sent": r["bytes_sent"],
        }
    least_squares.save_results(out, results, meta, lr=LR, average_rate=AVERAGE_RATE)


if __name__ == "__main__":
    main(sys.argv[1])
