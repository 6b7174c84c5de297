"""Run every asynchronous case in the deterministic (round-robin) order under horovodrun; rank 0
saves each rank's weights and momentum, and the center it evaluated, to a .npz.

Usage: horovodrun -np N -H localhost:N --gloo python tests/training/async_worker.py OUT.npz
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

from training import collectives  # noqa: E402
from training.optimizer import (  # noqa: E402
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
LR = 0.05
AVERAGE_RATE = 0.1


def run_case(exchange, inner, momentum, tau, beta, steps, path="loop"):
    rank = collectives.rank()
    a, b = reference.problem(rank)
    x0 = reference.initial_weights() if rank == 0 else np.full((reference.DIM, 1), 9.0)
    model = keras.Sequential([keras.Input((reference.DIM,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(x0.astype("float32"))
    opt = ElasticAveragingOptimizer(
        build_inner(inner, LR, momentum),
        tau=tau,
        beta=beta,
        exchange=exchange,
        average_rate=AVERAGE_RATE,
        order="round_robin",
        asynchronous=True,
    )
    opt.build(model.trainable_variables)
    if path == "fit":
        # keras' mean squared error is mean((y - p)^2): twice our loss, so halve the rate.
        opt.learning_rate = LR / 2
        model.compile(optimizer=opt, loss="mse", jit_compile=False)
        model.fit(
            a, b, batch_size=len(a), epochs=steps, shuffle=False, verbose=0,
            callbacks=[CenterServerCallback(opt)],
        )  # fmt: skip
        evaluated = opt.evaluation_variables[0].numpy()
        return _gathered(model, opt, evaluated)
    opt.start_asynchronous()
    xa, yb = tf.constant(a, tf.float32), tf.constant(b, tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_mean(tf.square(model(xa) - yb))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

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
    slots = getattr(opt.inner_optimizer, "momentums", [])
    velocity = slots[0].numpy() if slots else np.zeros_like(worker)
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
    for label, exchange, inner, momentum, tau, beta, steps, *path in CASES:
        r = run_case(exchange, inner, momentum, tau, beta, steps, *path)
        for key in ("workers", "velocities", "evaluated"):
            results[f"{label}/{key}"] = r[key]
        meta[label] = {
            "exchange": exchange,
            "inner": inner,
            "momentum": momentum,
            "tau": tau,
            "beta": beta,
            "steps": steps,
            "exchanges": r["exchanges"],
            "bytes_sent": r["bytes_sent"],
        }
    if collectives.rank() == 0:
        results["meta"] = np.array(
            json.dumps(
                {
                    "cases": meta,
                    "workers": collectives.size(),
                    "lr": LR,
                    "average_rate": AVERAGE_RATE,
                }
            )
        )
        np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
