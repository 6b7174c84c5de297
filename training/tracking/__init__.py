"""Track your own training script in the run store, in the shape MLflow users know.

    from training import tracking

    with tracking.start_run(name="my-model", params={"lr": 0.01}) as run:
        model.fit(x, y, callbacks=[tracking.KerasCallback(validation_data=(xv, yv))])
        run.log_metrics({"my_score": 0.9}, step=100)

Under horovodrun only rank 0 writes; the other ranks get a run that records nothing, so the same
script runs unchanged on every rank. The run lands in the store every other entry point uses
(`EASGD_DB_URL`, else `$EASGD_HOME/easgd.db`) with source `shell`, and ends `finished`, `failed`
(an exception) or `cancelled` (SIGTERM, SIGINT). This module imports neither TensorFlow nor
Horovod; `KerasCallback` (training/tracking/keras_callback.py) imports Keras when first used.
"""

from __future__ import annotations

from typing import Any

from training.tracking.run import Run, TrackingError, active_run, start_run

__all__ = [
    "KerasCallback",
    "Run",
    "TrackingError",
    "active_run",
    "log_metrics",
    "log_params",
    "optimizer_params",
    "set_tags",
    "start_run",
]


def _current() -> Run:
    run = active_run()
    if run is None:
        raise TrackingError(
            "no run is active: call training.tracking.start_run() first (or use "
            "training.tracking.KerasCallback, which starts one)"
        )
    return run


def log_metrics(values: dict[str, float], step: int | None = None) -> None:
    """Into the active run (`Run.log_metrics`)."""
    _current().log_metrics(values, step=step)


def log_params(params: dict[str, Any]) -> None:
    """Into the active run (`Run.log_params`)."""
    _current().log_params(params)


def set_tags(tags: dict[str, str | None]) -> None:
    """Into the active run (`Run.set_tags`)."""
    _current().set_tags(tags)


def __getattr__(name: str) -> Any:
    if name in ("KerasCallback", "optimizer_params"):
        from training.tracking import keras_callback

        return getattr(keras_callback, name)
    raise AttributeError(f"module 'training.tracking' has no attribute {name!r}")
