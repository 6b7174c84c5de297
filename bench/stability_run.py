"""The real optimizer on the paper's stability problem: F(x) = x^2 / 2 (h = 1) on every rank.

    horovodrun -np P ... python -m bench.stability_run ETA ALPHA ORDER STEPS

Rank 0 prints one JSON line: the norm of (x_1, .., x_p, c) at every step, so that its growth
rate can be set against the spectral radius of the map (bench/stability.py).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(eta: float, alpha: float, order: str, steps: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    from training.exchanges import collectives
    from training.exchanges.optimizer import ElasticAveragingOptimizer

    collectives.init()
    x = keras.Variable(np.ones((1,), "float64"), dtype="float64")
    opt = ElasticAveragingOptimizer(
        keras.optimizers.SGD(eta), tau=1, alpha=alpha, order=order, exchange="elastic"
    )
    opt.build([x])

    @tf.function
    def step():
        opt.apply([tf.identity(x.value)], [x])  # the gradient of x^2 / 2 is x

    norms = []
    for _ in range(steps):
        step()
        state = np.array(
            [v[0] for v in collectives.allgather_object(x.numpy())] + [opt.center[0].numpy()[0]]
        )
        norms.append(float(np.linalg.norm(state)))
    if collectives.rank() == 0:
        print(json.dumps({"norms": norms}), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
