"""Tree EASGD (Zhang's thesis): elastic averaging on two levels.

Groups of ranks (`training.exchanges.groups`) each keep a group center c_g. On steps with
t mod tau == 0, the elastic exchange within each group (alpha = beta / group size)::

    d_i = alpha (x_i - c_g);  x_i <- x_i - d_i;  c_g <- c_g + sum_g d_i

and on steps with t mod tau_root == 0 the group centers' with the root center c
(alpha_root = beta_root / groups)::

    e_g = alpha_root (c_g - c);  c_g <- c_g - e_g;  c <- c + sum_g e_g

On a step where both run, every force is computed from the values before the step, as the paper's
synchronous rule computes all of them from time t. The pull acts on x as elastic averaging's does
(for Keras' Nesterov SGD, x = y - delta m). The root center is evaluated; each group's members keep
replicas of c_g, every rank one of c (the leaders' all-reduce hands each leader the same sum; each
leader broadcasts it to its group).

Compressed (`compression`), each level's messages travel as codes with error feedback
(training/exchanges/compression.py): every rank its pull d_i, every leader its group's push e_g,
each keeping what rounding lost; x_i, c_g and c move by the decoded values, which every rank
decodes alike, so the replicas stay identical. Horovod 0.28.1 on Gloo cannot allgather within a
process set, so both levels gather over all ranks: each rank decodes its group's pulls (level 1)
and every leader's push (level 2, where the other members hand in nothing; they hold their
leader's push and residual, and need no broadcast). A rank thus receives every rank's codes at
level 1, not only its group's: the compression saves what is sent, not the tree's locality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from training.exchanges.base import (
    Exchange,
    collectives,
    finite,
    force_points,
    moving_rate,
    tf,
    total,
)


class Tree(Exchange):
    name = "tree"
    when = "before"
    evaluated = "center"
    fields = {
        "group_size": (
            int | None,
            Field(
                None,
                ge=1,
                le=1024,
                description=(
                    "Tree EASGD: ranks per group, a divisor of the workers (default: the ranks of "
                    "one host)."
                ),
            ),
        ),
        "tau_root": (
            int,
            Field(
                10,
                ge=1,
                le=100000,
                description=(
                    "Tree EASGD: steps between the group centers' exchanges with the root center."
                ),
            ),
        ),
        "beta_root": finite(
            float | None,
            None,
            ("Tree EASGD: root moving rate, beta_root = groups x alpha_root (default 0.9)."),
            gt=0,
            le=1,
        ),
    }
    arguments = {
        "tau": "tau",
        "beta": "beta",
        "group_size": "group_size",
        "tau_root": "tau_root",
        "beta_root": "beta_root",
        "compression": "compression",
    }

    @classmethod
    def init_collectives(cls, arguments: Mapping[str, Any], broadcast: bool = True) -> None:
        """Horovod registers process sets only when it starts. A restored optimizer (no
        broadcast) runs no collective: one rank may load a saved model alone."""
        if broadcast:
            collectives.init_tree(arguments.get("group_size"))
        else:
            collectives.init()

    @classmethod
    def check(cls, opt: Any, workers: int) -> None:
        group_size = opt.group_size
        if group_size is not None and workers % group_size:
            raise ValueError(
                f"optimizer.group_size: {group_size} does not divide resources.workers "
                f"({workers}); choose a divisor of the workers (received: {group_size})"
            )

    def __init__(
        self,
        *,
        group_size: int | None = None,
        tau_root: int = 10,
        beta_root: float | None = None,
        **shared: Any,
    ):
        super().__init__(**shared)
        if self.alpha is not None:
            raise ValueError(
                "The tree exchange takes beta (alpha = beta / group size) and beta_root, not "
                f"alpha. Received: alpha={self.alpha}"
            )
        if group_size is not None and (not isinstance(group_size, int) or group_size < 1):
            raise ValueError(
                f"group_size must be an integer >= 1. Received: group_size={group_size!r}"
            )
        if not isinstance(tau_root, int) or tau_root < 1:
            raise ValueError(f"tau_root must be an integer >= 1. Received: tau_root={tau_root!r}")
        if beta_root is not None and not 0 < beta_root <= 1:
            raise ValueError(f"beta_root must be in (0, 1]. Received: beta_root={beta_root}")
        self.group_size, self.tau_root, self.beta_root = group_size, tau_root, beta_root

    def resolve(self, workers: int) -> None:
        self.workers = workers  # alpha is per level, from beta and beta_root, once groups are known

    def build(self, opt: Any, var_list: list) -> None:
        super().build(opt, var_list)
        self.group_center = [
            opt.add_variable_from_reference(v, name="group_center") for v in var_list
        ]
        self.group_bytes = opt.add_variable((), dtype="float64", name="group_bytes")
        self.root_bytes = opt.add_variable((), dtype="float64", name="root_bytes")
        self.replicas.append(self.group_center)
        self.root_compressed = None
        if self.compressed is not None:
            from training.exchanges.compression import Compressed

            self.root_compressed = Compressed(self.compression, opt, var_list, "tree_root")

    def due(self, step: Any) -> Any:
        return self.communicates(step, self.tau, self.tau_root)

    def round(self, opt: Any, variables: list) -> Any:
        """The group level on steps with t mod tau == 0, the root level on steps with
        t mod tau_root == 0, every force from the values before the step."""
        layout = collectives.init_tree(self.group_size)
        rank = collectives.rank()
        group = layout.group_of(rank)
        step = opt.iterations.value
        on_group = step % self.tau == 0
        on_root = step % self.tau_root == 0
        alpha = moving_rate(self.beta, layout.group_size)
        alpha_root = moving_rate(self.beta_root, layout.count)
        pulls = [
            tf.cast(alpha, x.dtype) * (x - c.value)
            for x, c in zip(force_points(opt.inner_optimizer, variables), self.group_center)
        ]
        pushes = [
            tf.cast(alpha_root, g.dtype) * (g.value - c.value)
            for g, c in zip(self.group_center, self.center)
        ]
        n = len(pulls)

        def group_level():
            if self.compressed is None:
                summed, nbytes, seconds = collectives.timed_sum(pulls, "easgd_tree_group", group)
                sent = pulls
            else:
                sent, decoded, nbytes, seconds = self.compressed.gather(
                    opt, pulls, "easgd_tree_group_q", rows=group
                )
                summed = total(decoded)
            self._count(opt, self.group_bytes, nbytes, seconds)
            return [*sent, *summed]

        def root_level():
            centers = [c.value for c in self.center]
            if self.root_compressed is not None:
                own, decoded, nbytes, seconds = self.root_compressed.gather(
                    opt, pushes, "easgd_tree_root_q", range(layout.count), rank in layout.leaders
                )
                self._count(opt, self.root_bytes, nbytes, seconds)
                return [*[c + s for c, s in zip(centers, total(decoded))], *own]
            nbytes, seconds = 0, tf.constant(0.0, tf.float64)
            if rank in layout.leaders:
                summed, nbytes, seconds = collectives.timed_sum(
                    pushes, "easgd_tree_root", layout.leaders
                )
                centers = [c + s for c, s in zip(centers, summed)]
            centers, sent, more = collectives.timed_broadcast(
                centers, group[0], "easgd_tree_center", group
            )
            self._count(opt, self.root_bytes, nbytes + sent, seconds + more)
            return [*centers, *pushes]

        def unchanged(values):
            return lambda: [tf.identity(v) for v in values]

        zeros = [tf.zeros_like(d) for d in pulls]
        applied = tf.cond(on_group, group_level, unchanged(zeros + zeros))
        rooted = tf.cond(on_root, root_level, unchanged([c.value for c in self.center] + zeros))
        for x, d in zip(variables, applied[:n]):
            opt.assign_sub(x, d)
        for g, s, e in zip(self.group_center, applied[n:], rooted[n:]):
            opt.assign(g, g.value + s - e)
        for c, value in zip(self.center, rooted[:n]):
            opt.assign(c, value)
        return tf.constant(0.0, tf.float64)

    @staticmethod
    def _count(opt: Any, level_bytes: Any, nbytes: int, seconds: Any) -> None:
        level_bytes.assign_add(tf.constant(float(nbytes), tf.float64))
        opt.record(nbytes, seconds)

    def restart(self, variables: list) -> None:
        super().restart(variables)
        if self.root_compressed is not None:
            self.root_compressed.reset()
        for g, c in zip(self.group_center, self.center):
            g.assign(c.value)

    def communication(self) -> dict[str, float]:
        """bytes_sent split by level."""
        return {
            "group_bytes": float(self.group_bytes.numpy()),
            "root_bytes": float(self.root_bytes.numpy()),
        }
