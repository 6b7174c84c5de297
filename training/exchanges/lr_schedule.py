"""The learning rate of large-batch training: scaled with the workers, reached by a warm-up.

`ScaledWarmup` is a Keras `LearningRateSchedule`, set on the inner optimizer: Keras evaluates it
at the optimizer's own `iterations` before every step, so it is checkpointed and resumed with the
optimizer's state and needs no callback. With base rate eta, scale k (`training.schema.lr_scaling`:
1, p or sqrt(p) for p workers) and W warm-up steps, the step with 0-based index t uses::

    eta_t = eta + (k eta - eta) t / W    for t < W
    eta_t = k eta                        from t = W on

the gradual warm-up of Goyal et al. 2017 (section 2.2): from the rate that suits one worker's
batch to the scaled one, by the same amount each step. Horovod's `LearningRateWarmupCallback`
ramps the same way, per epoch where this ramps per step.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from training.schema.lr_scaling import lr_scale


@keras.saving.register_keras_serializable(package="easgd")
class ScaledWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """`learning_rate` x `lr_scale(scaling, workers)`, reached linearly over `warmup_steps`.

    Args:
        learning_rate: the base rate eta, the one that suits a single worker's batch.
        scaling: ``none``, ``linear`` (x workers) or ``sqrt`` (x sqrt(workers)).
        workers: p, the number of workers whose batches one step averages.
        warmup_steps: W; 0 starts at the scaled rate.
    """

    def __init__(
        self,
        learning_rate: float,
        scaling: str = "none",
        workers: int = 1,
        warmup_steps: int = 0,
        name: str | None = None,
    ):
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
            raise TypeError(f"learning_rate must be a number. Received: {learning_rate!r}")
        if not (math.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"learning_rate must be finite and > 0. Received: {learning_rate!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0. Received: {warmup_steps!r}")
        self.scale = lr_scale(scaling, workers)
        self.learning_rate = float(learning_rate)
        self.scaling = scaling
        self.workers = workers
        self.warmup_steps = warmup_steps
        self.name = name or "scaled_warmup"

    @property
    def target(self) -> float:
        """The rate once the warm-up is over."""
        return self.learning_rate * self.scale

    def __call__(self, step):
        target = ops.convert_to_tensor(self.target, "float32")
        if self.warmup_steps == 0:
            return target
        done = ops.minimum(ops.cast(step, "float32") / float(self.warmup_steps), 1.0)
        return self.learning_rate + (target - self.learning_rate) * done

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "scaling": self.scaling,
            "workers": self.workers,
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }


def scaled_learning_rate(
    learning_rate: float, scaling: str, workers: int, warmup_steps: int
) -> float | ScaledWarmup:
    """What the inner optimizer is given: the plain rate when nothing scales or warms up (a run
    configured as before is the same run, its rate a settable variable), else the schedule."""
    if scaling == "none" and warmup_steps == 0:
        return float(learning_rate)
    return ScaledWarmup(learning_rate, scaling, workers, warmup_steps)
