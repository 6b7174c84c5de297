"""Every registry algorithm through the optimizer factory, in one plain process (one rank):
prints, as JSON, the 1-based steps on which each one's round counter went up, what it
evaluates and what its saved configuration holds, and the exchanges that have equations.

Usage: python tests/training/schedule_worker.py TAU STEPS
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from training.exchanges.base import Exchange  # noqa: E402
from training.exchanges.optimizer import make_optimizer  # noqa: E402
from training.schema import parse_config  # noqa: E402
from training.schema.algorithms import EXCHANGES, REGISTRY  # noqa: E402


def rounds_of(name: str, tau: int, steps: int) -> dict:
    opt = make_optimizer(parse_config({"optimizer": {"algorithm": name, "tau": tau}}).optimizer)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x, y = tf.ones((4, 3)), tf.zeros((4, 1))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    on, seen = [], 0
    for s in range(1, steps + 1):
        step()
        rounds = opt.communication()["rounds"]
        if rounds > seen:
            on.append(s)
        seen = rounds
    evaluated = opt.evaluation_variables
    kinds = {
        "center": opt.center,
        "average": opt.average,
        "weights": model.trainable_variables,
        "mean": opt.mean,
    }
    return {
        "exchange": opt.exchange,
        "saved_tau": opt.get_config()["tau"],
        "saved": sorted(opt.get_config()),
        "rounds_on": on,
        "has_center": bool(opt.center),
        "evaluated": [
            k
            for k, v in kinds.items()
            if v and len(v) == len(evaluated) and all(a is b for a, b in zip(v, evaluated))
        ],
    }


def main(tau: int, steps: int) -> None:
    print(
        json.dumps(
            {
                "algorithms": {name: rounds_of(name, tau, steps) for name in REGISTRY},
                "rounds": sorted(n for n, e in EXCHANGES.items() if e.round is not Exchange.round),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
