"""Learning-rate scaling with the number of workers, without TensorFlow (the schema reads it).

With p workers each taking a batch of b, a step averages p x b examples. Goyal et al. 2017
("Accurate, Large Minibatch SGD") scale the learning rate with the batch: ``linear`` multiplies
the configured rate by p; ``sqrt`` by sqrt(p) (the variance argument, Krizhevsky 2014, Hoffer et
al. 2017); ``none`` keeps it. The Keras schedule that applies it, with the gradual warm-up, is
`training.exchanges.lr_schedule.ScaledWarmup`.
"""

from __future__ import annotations

import math

LR_SCALINGS = ("none", "linear", "sqrt")


def lr_scale(scaling: str, workers: int) -> float:
    """The factor the learning rate is multiplied by for `workers` workers."""
    if scaling not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}. Received: {scaling!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1. Received: workers={workers!r}")
    if scaling == "linear":
        return float(workers)
    if scaling == "sqrt":
        return math.sqrt(workers)
    return 1.0
