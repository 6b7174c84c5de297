"""Parameters as the run store records them, and the fields a form shows for a choice."""

from __future__ import annotations

import functools
import json
from typing import Any

from training.exchanges.base import DEFAULT_BETA
from training.schema.algorithms import REGISTRY
from training.schema.optimizer import Algorithm
from training.schema.zoo import DATASETS, DEFAULT_DATASET, DEFAULT_MODEL, MODELS


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys, as the run store and the query language name parameters."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def recorded_params(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved configuration as the run store records it: dotted keys, and of the optimizer
    section only the fields its algorithm and inner optimizer use (a `sync` run has no
    `optimizer.tau`, a run without LARS no `optimizer.lars_eta`)."""
    return used_params(flatten(config))


def used_params(params: dict[str, Any]) -> dict[str, Any]:
    """Of dotted parameters, those the run's algorithm and inner optimizer use (the registry's
    rule, `fields_for`): what is recorded, and what tells runs apart when they are compared,
    runs recorded before the rule included. An algorithm the registry does not know keeps all."""
    algorithm = params.get("optimizer.algorithm", Algorithm.EAMSGD)
    if algorithm not in REGISTRY:
        return dict(params)
    used = fields_for(algorithm, params.get("optimizer.inner"))
    return {
        key: value
        for key, value in params.items()
        if not key.startswith("optimizer.") or key.removeprefix("optimizer.") in used
    }


def param_value(value: Any) -> Any:
    """A recorded parameter as the value it was: the store keeps text ("0.05", "true",
    "easgd"), and a number must compare, sort and scale as one."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, int | float | bool) else value


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    from training.schema.experiment import ExperimentConfig

    return flatten(ExperimentConfig().to_dict())


def resolved_params(params: dict[str, Any]) -> dict[str, Any]:
    """What a run trained with, for telling runs apart: `used_params` as values, where a field
    left blank reads as what it stood for (the algorithm's inner optimizer and momentum, beta
    0.9 and alpha = beta / workers) and a field the algorithm uses that was not recorded when
    the run was reads as the schema's default. Fields the algorithm does not use stay out
    (`schema_default` says what they equal when runs are compared). A run of an algorithm the
    registry does not know keeps what it recorded."""
    algorithm = params.get("optimizer.algorithm")
    out = {k: param_value(v) for k, v in used_params(params).items()}
    if algorithm not in REGISTRY:
        return out
    spec = REGISTRY[algorithm]
    used = fields_for(algorithm, out.get("optimizer.inner"))
    for field in used:
        default = _schema_defaults().get(f"optimizer.{field}")
        if default is not None:
            out.setdefault(f"optimizer.{field}", default)
    inner = out.get("optimizer.inner")
    if not isinstance(inner, str):
        inner = spec.inner()
    if "inner" in used:
        out["optimizer.inner"] = inner
    if "momentum" in used and out.get("optimizer.momentum") is None:
        out["optimizer.momentum"] = spec.momentum(inner)
    workers = param_value(params.get("workers") or params.get("resources.workers"))
    alpha, beta = out.get("optimizer.alpha"), out.get("optimizer.beta")
    if "beta" in used and alpha is None and beta is None:
        beta = out["optimizer.beta"] = DEFAULT_BETA
    if isinstance(workers, int) and workers > 0:
        if "alpha" in used and alpha is None and isinstance(beta, int | float):
            out["optimizer.alpha"] = beta / workers
        if "beta" in used and beta is None and isinstance(alpha, int | float):
            out["optimizer.beta"] = alpha * workers
    return out


def schema_default(key: str) -> Any:
    """A dotted field's default in the schema (None for a key it has none for): what a field a
    run does not use equals when runs are compared, so that a sync run's unused
    `optimizer.asynchronous` is no difference from an EASGD run's false."""
    return _schema_defaults().get(key)


def fields_for(algorithm: str, inner: str | None = None) -> set[str]:
    """Optimizer fields that matter for an algorithm (the registry's), with those its inner
    optimizer adds (`inner`, else the algorithm's default): the UI shows only these."""
    return set(
        REGISTRY[Algorithm(algorithm)].fields_with(inner if isinstance(inner, str) else None)
    )


def visible_fields(data: dict[str, Any]) -> set[str]:
    """Dotted paths a form should show for a configuration: only what its choices use."""
    dataset = DATASETS.get((data.get("data", {}) or {}).get("dataset", DEFAULT_DATASET))
    model = MODELS.get((data.get("model", {}) or {}).get("name", DEFAULT_MODEL))
    algorithm = (data.get("optimizer", {}) or {}).get("algorithm", Algorithm.EAMSGD)
    if not isinstance(algorithm, str) or algorithm not in REGISTRY:
        algorithm = Algorithm.EAMSGD
    inner = (data.get("optimizer", {}) or {}).get("inner")
    shown = {
        "name",
        "seed",
        "data.dataset",
        "data.batch_size",
        "data.test_size",
        "model.name",
        "training.epochs",
        "training.max_steps",
        "training.eval_every",
        "checkpoint.every",
        "resources.workers",
    }
    shown |= {f"data.{f}" for f in (dataset.fields if dataset else ())}
    shown |= {f"model.{f}" for f in (model.fields if model else ())}
    shown |= {f"optimizer.{f}" for f in fields_for(algorithm, inner)}
    # Your own model or data, by import path: their options instead of a built-in one's fields.
    shown |= {"model.builder", "data.loader"}
    if (data.get("model", {}) or {}).get("builder"):
        shown -= {"model.name", *(f"model.{f}" for f in (model.fields if model else ()))}
        shown |= {"model.options", "model.loss", "model.metrics"}
    if (data.get("data", {}) or {}).get("loader"):
        shown -= {"data.dataset", "data.test_size"}
        shown -= {f"data.{f}" for f in (dataset.fields if dataset else ())}
        shown |= {"data.options"}
    return shown
