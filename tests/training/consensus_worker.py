"""Run every case of CASES (cdsgd and cdmsgd over several topologies) under horovodrun; rank 0
saves every worker's weights, the evaluated mean and the communication counts to a .npz.

Usage: horovodrun -np N -H localhost:N --gloo python tests/training/consensus_worker.py OUT.npz
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
import reference_consensus as ref  # noqa: E402

from training.exchanges import collectives  # noqa: E402
from training.exchanges.optimizer import ElasticAveragingOptimizer, build_inner, make_optimizer  # noqa: E402
from training.schema import parse_config  # noqa: E402

# (label, algorithm, topology, momentum, steps, path): topology is a name the optimizer takes,
# or one of the explicit matrices of `explicit`; path "loop" (a tf.function), "fit"
# (model.fit) or "config" (the optimizer the training program builds from a configuration).
CASES = [
    ("cdsgd-ring", "cdsgd", "ring", None, 9, "loop"),
    ("cdsgd-full", "cdsgd", "full", None, 7, "loop"),
    ("cdsgd-shift", "cdsgd", "shift", None, 8, "loop"),
    ("cdsgd-island", "cdsgd", "island", None, 6, "loop"),
    ("cdmsgd-ring", "cdmsgd", "ring", 0.9, 10, "loop"),
    ("cdmsgd-shift", "cdmsgd", "shift", 0.5, 8, "loop"),
    ("cdmsgd-full-config", "cdmsgd", "full", 0.95, 7, "config"),
    ("cdsgd-ring-fit", "cdsgd", "ring", None, 6, "fit"),
]
# Compressed (CHOCO's gossip): (label, algorithm, topology, momentum, steps, path, compression).
COMPRESSED = [
    ("cdsgd-ring-int4", "cdsgd", "ring", None, 9, "loop", "int4"),
    ("cdsgd-full-int8", "cdsgd", "full", None, 7, "loop", "int8"),
    ("cdmsgd-shift-int4", "cdmsgd", "shift", 0.5, 8, "loop", "int4"),
]
ALL = [(*c, "none") for c in CASES] + COMPRESSED
LR = 0.05


def explicit(kind: str, workers: int) -> list[list[float]]:
    """shift: 0.5 I + 0.5 P with P the cyclic shift, doubly stochastic but not symmetric, so that
    pi_jl and pi_lj differ (worker j takes half of j + 1's weights, and j + 1 none of j's);
    island: the first workers - 1 average, the last mixes with nobody."""
    pi = np.zeros((workers, workers))
    if kind == "shift":
        for j in range(workers):
            pi[j, j] += 0.5
            pi[j, (j + 1) % workers] += 0.5
    else:
        pi[: workers - 1, : workers - 1] = 1.0 / (workers - 1)
        pi[workers - 1, workers - 1] = 1.0
    return pi.tolist()


def build(
    algorithm: str, topology, momentum, path: str, compression: str = "none"
) -> ElasticAveragingOptimizer:
    if path == "config":
        optimizer = {"algorithm": algorithm, "learning_rate": LR, "topology": topology}
        return make_optimizer(
            parse_config({"optimizer": {**optimizer, "momentum": momentum}}).optimizer
        )
    exchange = "consensus" if algorithm == "cdsgd" else "mconsensus"
    extra = {} if momentum is None else {"consensus_momentum": momentum}
    return ElasticAveragingOptimizer(
        build_inner("sgd", LR),
        exchange=exchange,
        topology=topology,
        compression=compression,
        **extra,
    )


def run_case(algorithm, topology, momentum, steps, path, compression="none"):
    rank = collectives.rank()
    a, b = ref.data(collectives.size())
    a, b = a[rank].astype("float32"), b[rank][:, None].astype("float32")
    # Every rank starts elsewhere: the optimizer's broadcast must fix that.
    x0 = ref.start() if rank == 0 else np.full(ref.DIM, 3.0 + rank)
    model = keras.Sequential([keras.Input((ref.DIM,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(x0[:, None].astype("float32"))
    opt = build(algorithm, topology, momentum, path, compression)
    if path == "fit":
        # keras' mean squared error is mean((y - p)^2): twice our loss, so halve the rate.
        opt.learning_rate = LR / 2
        model.compile(optimizer=opt, loss="mse", jit_compile=False)
        model.fit(a, b, batch_size=len(a), epochs=steps, shuffle=False, verbose=0)
    else:
        xa, yb = tf.constant(a), tf.constant(b)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = 0.5 * tf.reduce_mean(tf.square(model(xa) - yb))
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

        for _ in range(steps):
            step()
    before = opt.communication()
    opt.prepare_evaluation()
    mean = opt.evaluation_variables[0].numpy()[:, 0]
    comm = opt.communication()
    return {
        "workers": np.stack(collectives.allgather_object(model.layers[0].kernel.numpy()[:, 0])),
        "means": np.stack(collectives.allgather_object(mean)),
        "bytes_sent": comm["bytes_sent"],
        "rounds": comm["rounds"],
        "evaluation_counted": comm != before,
        "iterations": int(opt.iterations.numpy()),
        "has_center": bool(opt.center),
    }


def main(out: str) -> None:
    collectives.init()
    workers = collectives.size()
    results, meta = {}, {}
    for label, algorithm, topology, momentum, steps, path, compression in ALL:
        if topology in ("shift", "island"):
            topology = explicit(topology, workers)
        r = run_case(algorithm, topology, momentum, steps, path, compression)
        results[f"{label}/workers"] = r.pop("workers")
        results[f"{label}/means"] = r.pop("means")
        meta[label] = {
            "algorithm": algorithm,
            "topology": topology,
            "momentum": momentum,
            "steps": steps,
            "compression": compression,
            **r,
        }
    if collectives.rank() == 0:
        results["meta"] = np.array(json.dumps({"cases": meta, "workers": workers, "lr": LR}))
        np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
