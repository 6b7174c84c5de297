"""Synchronous SGD, the anchor every comparison starts from.

Every step, before the inner step, the gradients are averaged with one all-reduce (what
Horovod's DistributedOptimizer does): g <- (1/p) sum_i g_i, and every worker applies the same g.

With b backup workers (Chen et al. 2016) the center server on rank 0 does it instead: each step
applies the mean of the first p - b gradients to arrive, and a late worker applies the means of
the steps it missed, in order, with its own inner optimizer (training/center/server.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from training.exchanges.base import Exchange, tf


class Sync(Exchange):
    name = "sync"
    when = "every"
    evaluated = "weights"
    fields = {
        "backup_workers": (
            int,
            Field(
                0,
                ge=0,
                le=1023,
                description=(
                    "Synchronous SGD with backup workers (Chen et al. 2016): each step applies the "
                    "mean of the first workers - backup_workers gradients to arrive; late ones are "
                    "dropped."
                ),
            ),
        )
    }
    arguments = {"backup_workers": "backup_workers", "compression": "compression"}
    server = ("backup", None)
    # Every worker applies the same means: they go out as float32 or float16.
    server_codes = False

    @classmethod
    def uses_server(cls, arguments: Mapping[str, Any]) -> bool:
        return arguments.get("backup_workers", 0) > 0

    @classmethod
    def check(cls, opt: Any, workers: int) -> None:
        backup = opt.backup_workers
        if backup and backup >= workers:
            raise ValueError(
                f"optimizer.backup_workers: {backup} backups of {workers} workers leave no "
                f"gradient to apply; choose 0 to {workers - 1} (received: {backup})"
            )

    @classmethod
    def refuse_elsewhere(cls, exchange: str, arguments: Mapping[str, Any]) -> None:
        if arguments.get("backup_workers"):
            raise ValueError(
                f"backup_workers belong to synchronous SGD (exchange 'sync'). Received: "
                f"exchange={exchange!r}, backup_workers={arguments['backup_workers']}"
            )

    def __init__(self, *, backup_workers: int = 0, **shared: Any):
        super().__init__(**shared)
        if not isinstance(backup_workers, int) or backup_workers < 0:
            raise ValueError(
                f"backup_workers must be an integer >= 0. Received: {backup_workers!r}"
            )
        self.backup_workers = backup_workers

    def round(self, opt: Any, grads: list) -> list:
        present = [i for i, g in enumerate(grads) if g is not None]
        if self.compressed is not None and len(present) < len(grads):
            raise ValueError(
                "compressed synchronous SGD needs a gradient for every trainable variable; "
                f"{len(grads) - len(present)} of {len(grads)} are None (train them all, or use "
                "compression: none)"
            )
        _, summed, nbytes, seconds = self.sum_all(
            opt, [grads[i] for i in present], "easgd_sync_grads"
        )
        averaged = [tf.cast(1.0 / self.workers, s.dtype) * s for s in summed]
        opt.record(nbytes, seconds)
        out = list(grads)
        for i, g in zip(present, averaged):
            out[i] = g
        return out

    def server_options(self) -> dict[str, Any]:
        return {"backup_workers": self.backup_workers}
