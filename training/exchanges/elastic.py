"""Elastic averaging (EASGD with SGD inside, EAMSGD with Nesterov momentum inside).

Every tau steps, on the step whose 0-based index t has t mod tau == 0, before the inner step,
with the current center c and the worker's x_t (this step's gradient was taken before the
round)::

    d = alpha (x - c);  x <- x - d;  c <- c + allreduce_sum(d)

then the inner step adds its own update, which gives the paper's
x_{t+1} = x_t - eta g(x_t) - alpha (x_t - c_t) exactly for inner optimizers whose update does not
depend on x's value (SGD, momentum, Adam; not weight decay, nor LARS, whose trust ratio reads
||x||: it sees the pulled x). Keras' Nesterov SGD keeps the look-ahead point y = x + delta m in the
variable (m its momentum slot, the paper's v), so for it x = y - delta m: d = alpha (y - delta m - c)
is applied to y, which moves x by d and leaves v alone; with the gradient Keras took at y, that is
Algorithm 2's v <- delta v - eta g(x + delta v);  x <- x + v - alpha (x - c).

With ``order="round_robin"`` the center takes the workers' pulls one at a time in rank order,
c <- c + alpha (x_j - c) for j = 0..p-1 (the schedule of the paper's stability analysis): one
allgather of the x_j, then the same replay on every rank.

With ``overlap_steps`` d (0 < d < tau), the sum leaves the step and the center takes it d steps
later (training/exchanges/overlap.py); each worker applies its own d at once, as before. Nothing
reads the center between, but an evaluation, so the rounds compute what the paper's do.

The center is the root rank's. Every rank keeps a replica because the all-reduce hands every rank
the same sum, so the center needs no broadcast; the test suite checks the replicas bit for bit.
The asynchronous form (Algorithm 1) is the center server's ``elastic`` kind
(training/center/asynchronous.py).
"""

from __future__ import annotations

import math
from typing import Any

from training.exchanges.base import Exchange, collectives, force_points, tf


def stability_bound(learning_rate: float) -> float:
    """Upper end of the paper's round-robin stability region for alpha, (4 - 2 eta) / (4 - eta);
    from eta = 2 on the region is empty (and the formula would divide by zero at 4)."""
    if learning_rate >= 2:
        return 0.0
    return (4 - 2 * learning_rate) / (4 - learning_rate)


class Elastic(Exchange):
    name = "elastic"
    when = "before"
    evaluated = "center"
    arguments = {
        "tau": "tau",
        "beta": "beta",
        "alpha": "alpha",
        "order": "order",
        "asynchronous": "asynchronous",
        "compression": "compression",
        "center_shards": "center_shards",
        "overlap_steps": "overlap_steps",
    }
    overlaps = True
    server = ("elastic", None)
    served_spread = True

    @classmethod
    def warnings(cls, opt: Any, workers: int) -> list[str]:
        out = []
        alpha = opt.resolved_alpha(workers)
        bound = stability_bound(opt.learning_rate)
        if alpha < 0:
            out.append(
                f"optimizer.alpha: {alpha:g} is a negative moving rate: workers and center push "
                "each other apart (the thesis relates it to momentum SGD); it is outside the "
                f"stability region 0 <= alpha <= {bound:.4g}, so keep |alpha| small"
            )
        elif not (0 <= alpha <= bound) or math.isnan(alpha):
            out.append(
                f"optimizer.alpha: {alpha:g} is outside the paper's stability region "
                f"0 <= alpha <= (4 - 2 eta) / (4 - eta) = {bound:.4g} for eta = "
                f"{opt.learning_rate:g}; training may diverge"
            )
        if workers * alpha > 1:
            out.append(
                f"optimizer.alpha: beta = workers x alpha = {workers * alpha:g} > 1 pulls the "
                "center past the workers' mean"
            )
        return out

    def round(self, opt: Any, variables: list) -> Any:
        points = force_points(opt.inner_optimizer, variables)
        if self.order == "round_robin":
            return self._round_robin(opt, variables, points)
        diffs = [tf.cast(self.alpha, p.dtype) * (p - c.value) for p, c in zip(points, self.center)]
        if self.flight is not None:
            for x, d in zip(variables, self.flight.post(opt, diffs)):
                opt.assign_sub(x, d)
            return tf.constant(0.0, tf.float64)
        diffs, summed, nbytes, seconds = self.sum_all(opt, diffs, "easgd_elastic")
        for x, d in zip(variables, diffs):
            opt.assign_sub(x, d)
        for c, s in zip(self.center, summed):
            opt.assign_add(c, s)
        return opt.record(nbytes, seconds)

    def land(self, opt: Any, variables: list, summed: list, sent: list) -> None:
        """Overlapped: each worker pulled itself when it posted; the center takes the sum now.
        The center is read only at the next round (after the landing) and when evaluated, so
        the rounds are the paper's to the bit's rounding."""
        for c, s in zip(self.center, summed):
            opt.assign_add(c, s)

    def _round_robin(self, opt: Any, variables: list, points: list) -> Any:
        """Every rank replays the same sequence on the gathered x_j, so the replicas agree.
        Compressed, each rank sends x_j - c, which every rank adds back to its replica of c."""
        rank = collectives.rank()
        if self.compressed is not None:
            offsets = [p - c.value for p, c in zip(points, self.center)]
            _, messages, nbytes, seconds = self.compressed.send(opt, offsets, "easgd_elastic_rr_q")
            gathered = [
                tf.stack([c.value + m[i] for m in messages]) for i, c in enumerate(self.center)
            ]
        else:
            gathered, nbytes, seconds = collectives.timed_gather(points, "easgd_elastic_rr")
        for x, c, xs in zip(variables, self.center, gathered):
            alpha = tf.cast(self.alpha, c.dtype)
            center, own = c.value, None
            for j in range(self.workers):
                e = alpha * (xs[j] - center)
                center = center + e
                own = e if j == rank else own
            opt.assign(c, center)
            opt.assign_sub(x, own)
        return opt.record(nbytes, seconds)

    def server_options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "deterministic": self.order == "round_robin"}
