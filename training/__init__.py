"""Elastic Averaging SGD on Horovod: the optimizer, its exchanges and the program each rank runs.

The public API is importable from here: ``ElasticAveragingOptimizer``, ``easgd``, ``eamsgd``,
``make_optimizer`` and ``CenterServerCallback``. They are loaded on first use, so that
``import training.schema`` (the job service, the UI) never imports TensorFlow or Horovod.

Packages: ``schema`` (the configuration and the registries; no TensorFlow), ``exchanges`` (the
optimizer and what workers do together), ``center`` (the center server on rank 0), ``run`` (the
program, trainer, checkpoints, metrics), ``zoo`` (the built-in data and models), ``launch``
(the horovodrun command line).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ElasticAveragingOptimizer": "training.exchanges.optimizer",
    "CenterServerCallback": "training.exchanges.optimizer",
    "easgd": "training.exchanges.optimizer",
    "eamsgd": "training.exchanges.optimizer",
    "make_optimizer": "training.exchanges.optimizer",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
