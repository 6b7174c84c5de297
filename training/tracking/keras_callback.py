"""`model.fit(..., callbacks=[KerasCallback(...)])`: a Keras training tracked as `python -m training`
tracks its own: per-step loss and the model's metrics, bytes sent and seconds in collectives,
the center's evaluation on held-out data, each rank's CPU and memory, and `center.keras`.

Every rank runs the callback (the center's evaluation and the system figures need each rank at
the same step); only rank 0 writes.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.exchanges import collectives
from training.run import system_metrics
from training.run.metrics import (
    BYTES_SENT,
    CENTER_ACCURACY,
    CENTER_LOSS,
    COMM_SECONDS,
    LEARNING_RATE,
    TRAIN_LOSS,
    WORKERS,
)
from training.run.trainer import load_center
from training.tracking.run import Run, TrackingError, active_run, start_run

# Of the optimizer's communication figures, those a run records (the others are totals).
COMMUNICATION = (BYTES_SENT, COMM_SECONDS, "wait_seconds")


def _positive(value: Any, what: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrackingError(f"{what}: a positive integer (received: {value!r:.80})")
    return value


class KerasCallback(keras.callbacks.Callback):
    """Tracks `model.fit` into the active run, or into one it starts (and ends) itself.

    `validation_data` ((x, y) or a dataset) is evaluated with the center's weights (the
    model's own for an optimizer that has no center) every `eval_every` steps and at the end.
    """

    def __init__(
        self,
        validation_data: Any = None,
        eval_every: int | None = None,
        log_every: int = 1,
        name: str | None = None,
        params: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.validation_data = validation_data
        self.eval_every = _positive(eval_every, "eval_every", allow_none=True)
        self.log_every = _positive(log_every, "log_every")
        self.name, self.params = name, params
        self.run: Run | None = None
        self._owned = False
        self._step = 0
        self._sampler: system_metrics.SystemSampler | None = None
        self._center: keras.Model | None = None

    def on_train_begin(self, logs=None):
        self.run = active_run()
        self._owned = self.run is None
        if self._owned:
            self.run = start_run(name=self.name, params=self.params)
        elif self.params:
            self.run.log_params(self.params)
        self.run.log_params(_optimizer_params(self.model.optimizer))
        collectives.init()  # a no-op where the script already called hvd.init()
        self._sampler = system_metrics.SystemSampler(collectives.local_rank())
        self._step = self._iterations()
        if self._step == 0:  # every rank: the evaluation takes part in collectives
            self.run.log_metrics(self._evaluation(), step=0)

    def on_train_batch_end(self, batch, logs=None):
        # The optimizer's count, the same on every rank (and right with steps_per_execution).
        before, self._step = self._step, self._iterations()
        values: dict[str, float] = {}
        if self._step // self.log_every > before // self.log_every:
            values.update(self._train_values(logs or {}))
        if self.eval_every and self._step // self.eval_every > before // self.eval_every:
            values.update(self._evaluation())
        if values:
            self.run.log_metrics(values, step=self._step)

    def on_train_end(self, logs=None):
        self.run.log_metrics(self._evaluation(), step=self._step)
        if self.run.recording:  # the evaluation left the center in it
            self._center.save(self.run.run_dir / "center.keras", include_optimizer=False)
        if self._owned:
            self.run.end()

    def _iterations(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _train_values(self, logs: dict[str, Any]) -> dict[str, float]:
        values = {}
        for key, value in logs.items():
            if isinstance(value, int | float | np.floating | np.integer) or hasattr(value, "numpy"):
                values[TRAIN_LOSS if key == "loss" else f"train_{key}"] = float(value)
        opt = self.model.optimizer
        comm = opt.communication() if hasattr(opt, "communication") else {}
        values.update({k: float(comm[k]) for k in COMMUNICATION if k in comm})
        try:
            values[LEARNING_RATE] = float(keras.ops.convert_to_numpy(opt.learning_rate))
        except (TypeError, ValueError, AttributeError):
            pass
        return values

    def _evaluation(self) -> dict[str, float]:
        """Every rank: the center's figures (rank 0's evaluation) and each rank's CPU and memory."""
        size = collectives.size()
        mine = system_metrics.slots(self._sampler.sample(), collectives.rank(), size)
        summed = collectives.sum_scalar(tf.constant(mine, tf.float64), "easgd_tracking_system")
        values = {**system_metrics.metrics(summed.numpy().tolist(), size), WORKERS: float(size)}
        center = self._load_center()
        if center is not None and self.validation_data is not None:
            values.update(_center_values(center, self.validation_data))
        return values

    def _load_center(self) -> keras.Model | None:
        """Every rank takes part (some optimizers gather the workers' mean); rank 0 gets back a
        copy of the model holding the center's weights."""
        opt = self.model.optimizer
        center = self.model.trainable_variables
        if hasattr(opt, "prepare_evaluation") and opt.built:
            opt.prepare_evaluation()
            center = opt.evaluation_variables
        if not self.run.recording:
            return None
        if self._center is None:
            self._center = _copy(self.model)
        if len(center) != len(self._center.trainable_variables):
            raise TrackingError(
                f"the optimizer's center has {len(center)} variables but the model "
                f"{len(self._center.trainable_variables)}: compile the model with the "
                "optimizer that trains it"
            )
        load_center(self._center, self.model, center)
        return self._center


def _copy(model: keras.Model) -> keras.Model:
    """The model's architecture, compiled with its loss and metrics (not its optimizer: the copy
    is only evaluated and saved)."""
    copy = keras.models.clone_model(model)
    if not copy.built:
        copy.build_from_config(model.get_build_config() or {})
    config = dict(model.get_compile_config() or {})
    config.pop("optimizer", None)
    try:
        copy.compile_from_config(config)
    except Exception:  # noqa: BLE001 - a loss or metric Keras cannot rebuild from its config
        copy.compile(loss=model.loss)
    return copy


def _center_values(center: keras.Model, data: Any) -> dict[str, float]:
    if isinstance(data, tuple) and len(data) == 2:
        found = center.evaluate(data[0], data[1], verbose=0, return_dict=True)
    else:
        found = center.evaluate(data, verbose=0, return_dict=True)
    values: dict[str, float] = {}
    for key, value in found.items():
        if key == "loss":
            values[CENTER_LOSS] = float(value)
        elif "accuracy" in key and CENTER_ACCURACY not in values:
            values[CENTER_ACCURACY] = float(value)
        else:
            values[f"center_{key}"] = float(value)
    return values


def _optimizer_params(opt) -> dict[str, Any]:
    """The optimizer's settings as `optimizer.*` parameters (scalars only)."""
    try:
        config = opt.get_config()
    except (NotImplementedError, AttributeError):
        return {}
    params = {"optimizer.class": type(opt).__name__}
    for key, value in config.items():
        if isinstance(value, bool | int | float | str) and key != "name":
            params[f"optimizer.{key}"] = value
    return params
