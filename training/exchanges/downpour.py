"""The DOWNPOUR family, in the forms of Zhang, Choromanska & LeCun's supplement.

- ``downpour``: after every tau inner steps ((t + 1) mod tau == 0), the center receives the sum
  of the workers' accumulated updates, c <- c + sum_i (x_i - c), and every worker restarts from c.
- ``mdownpour``: as downpour, with Nesterov momentum (delta) on the center's update, in the
  look-ahead form Keras uses: v <- delta v + D;  c <- c + delta v + D, with D = sum_i (x_i - c).
  The variable c is the look-ahead point the master hands out (the paper's x~ + delta v).
- ``mvadownpour``: downpour, and the master's moving average z <- (1 - a) z + a c each time the
  center changes; z is the evaluated model.
- ``adownpour``: downpour, and the master's time average z <- z + (c - z) / (k + 1) after the
  k-th center update (z is the mean of the centers c_0 .. c_k); z is the evaluated model.

With Keras' Nesterov SGD inside, x is the paper's (the variable less delta m), as for the
elastic force, and a restart sets that x.

Each variant overrides what differs: how the center takes the sum, or what the master keeps after.
The asynchronous forms (all but mdownpour) are the center server's ``downpour`` kind, which keeps
the same averages (training/center/asynchronous.py).
"""

from __future__ import annotations

from typing import Any

from training.exchanges.base import (
    Exchange,
    finite,
    force_points,
    restart_points,
    tf,
)

_TIMING = {
    "order": "order",
    "asynchronous": "asynchronous",
    "compression": "compression",
    "center_shards": "center_shards",
}


class Downpour(Exchange):
    name = "downpour"
    when = "after"
    evaluated = "center"
    arguments = {"tau": "tau", **_TIMING}
    server = ("downpour", None)

    @classmethod
    def warnings(cls, opt: Any, workers: int) -> list[str]:
        if "order" in cls.arguments and opt.order == "round_robin" and not opt.asynchronous:
            return [
                f"optimizer.order: round_robin changes nothing in synchronous '{opt.spec.name}' "
                "(the center takes the sum of the updates); it orders the asynchronous form's "
                "turns"
            ]
        return []

    def round(self, opt: Any, variables: list) -> Any:
        points = force_points(opt.inner_optimizer, variables)
        deltas = [x - c.value for x, c in zip(points, self.center)]
        _, summed, nbytes, seconds = self.sum_all(opt, deltas, "easgd_downpour")
        self.take(opt, summed)
        restarts = restart_points(opt.inner_optimizer, variables, [c.value for c in self.center])
        for x, value in zip(variables, restarts):
            opt.assign(x, value)
        seconds = opt.record(nbytes, seconds)
        self.after_update(opt)
        return seconds

    def take(self, opt: Any, total: list) -> None:
        """The center takes the sum of the accumulated updates."""
        for c, s in zip(self.center, total):
            opt.assign_add(c, s)

    def after_update(self, opt: Any) -> None:
        """What the master keeps of the center once it changed (its averages)."""
        return  # AutoGraph cannot convert a function whose body is a docstring alone

    def server_options(self) -> dict[str, Any]:
        return {"deterministic": self.order == "round_robin"}


class MDownpour(Downpour):
    name = "mdownpour"
    arguments = {"tau": "tau", "center_momentum": "momentum", "compression": "compression"}
    server = None

    def __init__(self, *, center_momentum: float = 0.99, **shared: Any):
        super().__init__(**shared)
        if not 0 <= center_momentum < 1:
            raise ValueError(f"center_momentum must be in [0, 1). Received: {center_momentum}")
        self.center_momentum = float(center_momentum)

    def build(self, opt: Any, var_list: list) -> None:
        super().build(opt, var_list)
        self.center_velocity = [
            opt.add_variable_from_reference(v, name="center_velocity") for v in var_list
        ]

    def take(self, opt: Any, total: list) -> None:
        delta = self.center_momentum
        for c, v, s in zip(self.center, self.center_velocity, total):
            opt.assign(v, tf.cast(delta, v.dtype) * v.value + s)
            opt.assign_add(c, tf.cast(delta, v.dtype) * v.value + s)


class MVADownpour(Downpour):
    name = "mvadownpour"
    evaluated = "average"
    fields = {
        "average_rate": finite(
            float, 0.001, "Moving-average rate of MVADOWNPOUR's evaluated model.", gt=0, le=1
        )
    }
    arguments = {"tau": "tau", "average_rate": "average_rate", **_TIMING}
    server = ("downpour", "moving")

    def __init__(self, *, average_rate: float = 0.001, **shared: Any):
        super().__init__(**shared)
        if not 0 < average_rate <= 1:
            raise ValueError(f"average_rate must be in (0, 1]. Received: {average_rate}")
        self.average_rate = float(average_rate)

    def after_update(self, opt: Any) -> None:
        a = self.average_rate
        for z, c in zip(self.average, self.center):
            opt.assign(z, (1.0 - a) * z.value + a * c.value)

    def server_options(self) -> dict[str, Any]:
        return {**super().server_options(), "average_rate": self.average_rate}


class ADownpour(Downpour):
    name = "adownpour"
    evaluated = "average"
    server = ("downpour", "time")

    def after_update(self, opt: Any) -> None:
        k = tf.cast(opt.rounds.value, self.average[0].dtype)  # this update's k, from 1
        for z, c in zip(self.average, self.center):
            opt.assign_add(z, (c.value - z.value) / (k + 1.0))
