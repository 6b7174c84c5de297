"""LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, arXiv:1708.03888), for
Keras 3.

Keras 3 has no LARS (it has LAMB), TensorFlow Addons is unmaintained and never supported
Keras 3, and TF Model Garden's LARS is a Keras 2 legacy optimizer; so it is here, small.

For each variable w with gradient g, global learning rate gamma_t (a schedule may give it),
trust coefficient eta, weight decay beta and momentum m, the paper's Algorithm 1::

    lambda = eta ||w|| / (||g|| + beta ||w||)          the local (layer-wise) rate
    v <- m v + gamma_t lambda (g + beta w)
    w <- w - v

with lambda = 1 when ||w|| = 0 or ||g|| = 0 (a layer still at zero, or one that got no gradient,
as TF Model Garden's and NVIDIA Apex's LARS do). Variables of rank 0 or 1 (biases, batch
normalisation's scale and offset) are excluded by default, from both the trust ratio and the
weight decay: they take v <- m v + gamma_t g (the practice of TF Model Garden, SimCLR, BYOL, and
MLPerf's LARS), because their norms say little about a step's safe size.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def _check_rate(name: str, value, low: float, high: float, high_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number. Received: {name}={value!r}")
    if value < low or value > high or (high_open and value == high):
        bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {bound}. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="easgd")
class LARS(keras.optimizers.Optimizer):
    """Momentum SGD with a layer-wise trust ratio (You et al. 2017).

    Args:
        learning_rate: the global rate gamma: a float or a `LearningRateSchedule` (LARS is meant
            to be used with warm-up, `training.exchanges.lr_schedule.ScaledWarmup`).
        momentum: m, in [0, 1).
        eta: the trust coefficient (the paper's 0.001).
        weight_decay_rate: beta, an L2 term added to the gradient and inside the trust ratio, as
            in the paper. (Keras' own `weight_decay` argument is decoupled, AdamW-style decay
            applied on top; it is left to the base class.)
        exclude_1d: leave variables of rank 0 and 1 out of the trust ratio and the weight decay.
        **kwargs: the base optimizer's (clipnorm, weight_decay, use_ema, ...).
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.9,
        eta: float = 0.001,
        weight_decay_rate: float = 0.0,
        exclude_1d: bool = True,
        name: str = "lars",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = _check_rate("momentum", momentum, 0.0, 1.0, high_open=True)
        self.eta = _check_rate("eta", eta, 0.0, math.inf, high_open=False)
        if self.eta == 0:
            raise ValueError(f"eta must be > 0. Received: eta={eta!r}")
        self.weight_decay_rate = _check_rate(
            "weight_decay_rate", weight_decay_rate, 0.0, math.inf, high_open=False
        )
        self.exclude_1d = bool(exclude_1d)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def adapts(self, variable) -> bool:
        """Whether `variable` takes the trust ratio and the weight decay."""
        return not (self.exclude_1d and len(variable.shape) <= 1)

    def trust_ratio(self, variable, gradient):
        """eta ||w|| / (||g|| + beta ||w||), or 1 when either norm is 0."""
        w_norm = ops.sqrt(ops.sum(ops.square(variable)))
        g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
        beta = ops.cast(self.weight_decay_rate, variable.dtype)
        eta = ops.cast(self.eta, variable.dtype)
        usable = ops.logical_and(ops.greater(w_norm, 0), ops.greater(g_norm, 0))
        # The denominator is > 0 wherever the ratio is used; elsewhere it is replaced by 1 so
        # that no 0 / 0 is computed at all.
        denominator = ops.where(usable, g_norm + beta * w_norm, ops.ones_like(g_norm))
        return ops.where(usable, eta * w_norm / denominator, ops.ones_like(w_norm))

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(ops.convert_to_tensor(gradient), variable.dtype)
        v = self.momentums[self._get_variable_index(variable)]
        if self.adapts(variable):
            w = ops.convert_to_tensor(variable)
            step = self.trust_ratio(w, g) * (g + ops.cast(self.weight_decay_rate, w.dtype) * w)
        else:
            step = g
        m = ops.cast(self.momentum, variable.dtype)
        self.assign(v, ops.add(ops.multiply(m, v), ops.multiply(lr, step)))
        self.assign_sub(variable, v)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "eta": self.eta,
                "weight_decay_rate": self.weight_decay_rate,
                "exclude_1d": self.exclude_1d,
            }
        )
        return config
