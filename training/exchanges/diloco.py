"""DiLoCo (Douillard et al. 2023, "DiLoCo: Distributed Low-Communication Training of Language
Models", Algorithm 1), a baseline in the same harness as EASGD.

Every worker starts each outer step from the shared parameters theta, takes tau inner steps (the
paper's H; inner AdamW by default), and then, after the tau-th ((t + 1) mod tau == 0)::

    delta = (1/p) sum_i (theta - x_i)        the outer gradient, one all-reduce
    b <- mu b + delta;  theta <- theta - eta_out (delta + mu b)    outer Nesterov step
    x_i <- theta                             every worker restarts from it

The outer Nesterov step is PyTorch's `SGD(nesterov=True)`, which the paper's code uses, with the
paper's outer learning rate 0.7 and momentum 0.9 as defaults. theta is kept as the center (every
rank holds a replica, the same sum everywhere), and evaluated. Compressed (`compression`), each
worker sends Q(theta - x_i + e_i) and keeps what rounding lost (error feedback), as Streaming
DiLoCo and INTELLECT-1 quantize the outer gradient.

With ``overlap_steps`` d, the outer gradient's all-reduce runs behind the next d inner steps, as
Streaming DiLoCo overlaps it; the outer step then lands and each worker keeps what it did
meanwhile, x_i <- x_i + (theta_new - x_i(sent)). Streaming DiLoCo mixes instead,
x_i <- alpha x_i + (1 - alpha) theta_new (training/exchanges/overlap.py).
"""

from __future__ import annotations

from typing import Any

from training.exchanges.base import finite, force_points, restart_points, tf
from training.exchanges.localsgd import LocalSGD


class DiLoCo(LocalSGD):
    name = "diloco"
    fields = {
        "outer_learning_rate": finite(
            float,
            0.7,
            "DiLoCo: the outer Nesterov step's learning rate (0.7 in the paper).",
            gt=0,
            le=10,
        ),
        "outer_momentum": finite(
            float, 0.9, "DiLoCo: the outer Nesterov step's momentum (0.9 in the paper).", ge=0, lt=1
        ),
    }
    arguments = {
        "tau": "tau",
        "outer_learning_rate": "outer_learning_rate",
        "outer_momentum": "outer_momentum",
        "compression": "compression",
        "overlap_steps": "overlap_steps",
    }

    def __init__(
        self, *, outer_learning_rate: float = 0.7, outer_momentum: float = 0.9, **shared: Any
    ):
        super().__init__(**shared)
        if not 0 < outer_learning_rate <= 10:
            raise ValueError(
                f"outer_learning_rate must be in (0, 10]. Received: {outer_learning_rate}"
            )
        if not 0 <= outer_momentum < 1:
            raise ValueError(f"outer_momentum must be in [0, 1). Received: {outer_momentum}")
        self.outer_learning_rate = float(outer_learning_rate)
        self.outer_momentum = float(outer_momentum)

    def build(self, opt: Any, var_list: list) -> None:
        super().build(opt, var_list)
        self.outer_velocity = [
            opt.add_variable_from_reference(v, name="outer_velocity") for v in var_list
        ]

    def round(self, opt: Any, variables: list) -> Any:
        points = force_points(opt.inner_optimizer, variables)
        gradients = [c.value - x for x, c in zip(points, self.center)]
        if self.flight is not None:
            self.flight.post(opt, gradients)
            return tf.constant(0.0, tf.float64)
        _, summed, nbytes, seconds = self.sum_all(opt, gradients, "easgd_diloco")
        self._outer_step(summed)
        restarts = restart_points(opt.inner_optimizer, variables, [c.value for c in self.center])
        for x, value in zip(variables, restarts):
            opt.assign(x, value)
        return opt.record(nbytes, seconds)

    def land(self, opt: Any, variables: list, summed: list, sent: list) -> None:
        """Overlapped: the outer step d inner steps after each worker sent theta - x_i; the
        worker keeps what it did since: x_i <- x_i + (theta_new - (theta - sent_i))."""
        before = [tf.identity(c.value) for c in self.center]  # read before the step
        self._outer_step(summed)
        for x, c, old, own in zip(variables, self.center, before, sent):
            opt.assign_add(x, c.value - (old - own))

    def _outer_step(self, summed: list) -> None:
        lr, mu = self.outer_learning_rate, self.outer_momentum
        for c, b, s in zip(self.center, self.outer_velocity, summed):
            delta = s * tf.cast(1.0 / self.workers, s.dtype)
            velocity = tf.cast(mu, s.dtype) * b.value + delta
            b.assign(velocity)
            c.assign(c.value - tf.cast(lr, s.dtype) * (delta + tf.cast(mu, s.dtype) * velocity))
