"""Local SGD (periodic model averaging).

After every tau inner steps ((t + 1) mod tau == 0), every worker is set to the workers' mean,
x_i <- (1/p) sum_j x_j, with one all-reduce; the mean is also kept as the center, which is
evaluated. With Keras' Nesterov SGD inside, x is the paper's (the variable less delta m).

With ``overlap_steps`` d, each worker sends x_i - c and trains on; d steps later the mean lands
and the worker keeps what it did meanwhile (`land`): the paper's rule with the mean applied as a
correction d steps late (training/exchanges/overlap.py).
"""

from __future__ import annotations

from typing import Any

from training.exchanges.base import Exchange, collectives, force_points, restart_points, tf, total


class LocalSGD(Exchange):
    name = "localsgd"
    when = "after"
    evaluated = "center"
    arguments = {"tau": "tau", "compression": "compression", "overlap_steps": "overlap_steps"}
    overlaps = True

    def round(self, opt: Any, variables: list) -> Any:
        points = force_points(opt.inner_optimizer, variables)
        if self.flight is not None:
            self.flight.post(opt, [x - c.value for x, c in zip(points, self.center)])
            return tf.constant(0.0, tf.float64)
        if self.compressed is not None:
            mean, nbytes, seconds = self.compressed_mean(opt, points, "easgd_localsgd_q")
        else:
            mean, nbytes, seconds = collectives.timed_mean(points, "easgd_localsgd")
        restarts = restart_points(opt.inner_optimizer, variables, mean)
        for x, c, m, value in zip(variables, self.center, mean, restarts):
            opt.assign(c, m)
            opt.assign(x, value)
        return opt.record(nbytes, seconds)

    def land(self, opt: Any, variables: list, summed: list, sent: list) -> None:
        """Overlapped: the mean arrives d steps after each worker sent x_i - c (exact, whatever
        the codes carried); the worker keeps what it did since, x_i <- x_i + (mean - (c +
        sent_i)), and the center is the mean."""
        scale = 1.0 / self.workers
        for x, c, s, own in zip(variables, self.center, summed, sent):
            moved = tf.cast(scale, s.dtype) * s
            opt.assign_add(x, moved - own)
            opt.assign_add(c, moved)

    def compressed_mean(self, opt: Any, points: list, name: str) -> tuple[list, int, Any]:
        """The workers' mean, each sending what it moved since the last mean (the center every
        worker started the period from): c + (1/p) sum_j Q(x_j - c + e_j)."""
        offsets = [x - c.value for x, c in zip(points, self.center)]
        _, messages, nbytes, seconds = self.compressed.send(opt, offsets, name)
        scale = 1.0 / self.workers
        mean = [c.value + tf.cast(scale, s.dtype) * s for c, s in zip(self.center, total(messages))]
        return mean, nbytes, seconds
