"""Tree EASGD under horovodrun: every case of CASES on every rank; rank 0 saves each rank's
weights, group center, root center, evaluated variables and communication counters to a .npz.

Usage: horovodrun -np 4 -H localhost:4 --gloo python tests/training/tree_worker.py OUT.npz GROUP
(GROUP: the group size, or "host" for the default, the ranks of one host)
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]  # its references; tests.training
import least_squares  # noqa: E402
import reference_tree as ref  # noqa: E402

from training.exchanges import collectives  # noqa: E402
from training.exchanges.optimizer import ElasticAveragingOptimizer, build_inner  # noqa: E402

# Each case: (label, inner, momentum, tau, tau_root, beta, beta_root, steps)
CASES = [
    # both levels on t = 0, 6, 12: the simultaneous update
    ("sgd-tau2-root3", "sgd", 0.0, 2, 3, 0.9, 0.9, 13),
    # the root level every step, the groups every 3 steps
    ("sgd-tau3-root1", "sgd", 0.0, 3, 1, 0.6, 0.5, 10),
    # EAMSGD inside: the pull acts on x = y - delta m, not on Keras' look-ahead y
    ("nesterov-tau2-root4", "nesterov", 0.9, 2, 4, 0.9, 0.8, 12),
]
# Compressed messages at both levels, as CASES with their compression last.
COMPRESSED = [
    ("int4-tau2-root3", "sgd", 0.0, 2, 3, 0.9, 0.9, 13, "int4"),
    ("int8-nesterov-tau2-root4", "nesterov", 0.9, 2, 4, 0.9, 0.8, 12, "int8"),
    ("float16-tau3-root1", "sgd", 0.0, 3, 1, 0.6, 0.5, 10, "float16"),
]
ALL = [(*case, "none") for case in CASES] + COMPRESSED
LR = 0.05


def run_case(group_size, inner, momentum, tau, tau_root, beta, beta_root, steps, compression):
    rank = collectives.rank()
    a, b = ref.problem(rank)
    # Every rank but 0 starts elsewhere: the optimizer's broadcast must fix that.
    w0 = ref.initial_weights() if rank == 0 else np.full((ref.DIM + 1, 1), 7.0)
    model = keras.Sequential([keras.Input((ref.DIM,)), keras.layers.Dense(1)])
    model.layers[0].kernel.assign(w0[:-1].astype("float32"))
    model.layers[0].bias.assign(w0[-1].astype("float32"))
    opt = ElasticAveragingOptimizer(
        build_inner(inner, LR, momentum),
        tau=tau,
        beta=beta,
        exchange="tree",
        group_size=group_size,
        tau_root=tau_root,
        beta_root=beta_root,
        compression=compression,
    )
    xa, yb = tf.constant(a[:, :-1], tf.float32), tf.constant(b, tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_mean(tf.square(model(xa) - yb))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)

    for _ in range(steps):
        step()

    def flat(variables):
        return np.concatenate([np.reshape(v.numpy(), (-1, 1)) for v in variables])

    # Keras' momentum slots, in the model's variable order (none for plain SGD).
    momentums = getattr(opt.inner_optimizer, "momentums", None) or []
    # What a saved model's optimizer would come back as (without a collective).
    restored = ElasticAveragingOptimizer.from_config(opt.get_config())
    keys = ("exchange", "tau", "beta", "alpha", "group_size", "tau_root", "beta_root")
    keys += ("compression",)
    return {
        "restored": {k: getattr(restored, k) for k in keys},
        "workers": flat(model.trainable_variables),
        "momentums": flat(momentums) if momentums else np.zeros((ref.DIM + 1, 1)),
        "group_centers": flat(opt.group_center),
        "roots": flat(opt.center),
        "evaluated": flat(opt.evaluation_variables),
        "communication": opt.communication(),
        "iterations": int(opt.iterations.numpy()),
    }


def main(out: str, group: str) -> None:
    group_size = None if group == "host" else int(group)
    layout = collectives.init_tree(group_size)
    results, meta = {}, {}
    for label, inner, momentum, tau, tau_root, beta, beta_root, steps, compression in ALL:
        r = run_case(
            group_size, inner, momentum, tau, tau_root, beta, beta_root, steps, compression
        )
        for key in ("workers", "momentums", "group_centers", "roots", "evaluated"):
            results[f"{label}/{key}"] = np.stack(collectives.allgather_object(r[key]))
        meta[label] = {
            "inner": inner,
            "momentum": momentum,
            "tau": tau,
            "tau_root": tau_root,
            "beta": beta,
            "beta_root": beta_root,
            "steps": steps,
            "compression": compression,
            "communication": collectives.allgather_object(r["communication"]),
            "restored": r["restored"],
            "iterations": r["iterations"],
        }
    least_squares.save_results(out, results, meta, group=group, group_size=layout.group_size, lr=LR)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
