"""`model.fit(..., callbacks=[KerasCallback(...)])`: a Keras training tracked as `python -m training`
tracks its own: per-step loss and the model's metrics, bytes sent and seconds in collectives,
the center's evaluation on held-out data, each rank's CPU and memory, and `center.keras`. It
checkpoints every rank's model and optimizer (the center included) in the run directory, and a
run started with `resume` (what the job service asks of a relaunched job) continues from there.

Every rank runs the callback (the center's evaluation, the system figures and checkpoints need
each rank at the same step); only rank 0 writes the run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.exchanges import collectives
from training.run import checkpoint, system_metrics
from training.run.metrics import (
    BYTES_SENT,
    CENTER_ACCURACY,
    CENTER_LOSS,
    COMM_SECONDS,
    LEARNING_RATE,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    WORKERS,
)
from training.run.trainer import load_center
from training.schema.algorithms import algorithm_of
from training.tracking.run import Run, TrackingError, active_run, start_run

# Of the optimizer's communication figures, those a run records (the others are totals).
COMMUNICATION = (BYTES_SENT, COMM_SECONDS, "wait_seconds")


def _positive(value: Any, what: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrackingError(f"{what}: a positive integer (received: {value!r:.80})")
    return value


def _from_job(name: str, default: int) -> int | None:
    """A job's checkpoint setting, as the service passes it ("none": only at the end)."""
    text = os.environ.get(name)
    if text is None:
        return default
    return None if text == "none" else int(text)


class KerasCallback(keras.callbacks.Callback):
    """Tracks `model.fit` into the active run, or into one it starts (and ends) itself.

    `validation_data` ((x, y) or a dataset) is evaluated with the center's weights (the
    model's own for an optimizer that has no center) every `eval_every` steps and at the end.
    Every `checkpoint_every` steps (None: only at the end) each rank saves its model's and its
    optimizer's variables; the last `keep` complete checkpoints are kept. Left out, they are the
    job's `checkpoint.every` and `checkpoint.keep` when the job service runs the script, else 200
    and 2.

    A resumed run restores its last checkpoint before the first step and, as Keras'
    `BackupAndRestore` does, starts `fit` again at the epoch that checkpoint was in: the step
    count goes on from the checkpoint's, and training stops at the step an uninterrupted `fit`
    would have stopped at.
    """

    def __init__(
        self,
        validation_data: Any = None,
        eval_every: int | None = None,
        log_every: int = 1,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        checkpoint_every: int | None | str = "job",
        keep: int | str = "job",
    ):
        super().__init__()
        if checkpoint_every == "job":
            checkpoint_every = _from_job("EASGD_CHECKPOINT_EVERY", 200)
        if keep == "job":
            keep = _from_job("EASGD_CHECKPOINT_KEEP", 2)
        self.checkpoint_every = _positive(checkpoint_every, "checkpoint_every", allow_none=True)
        self.keep = _positive(keep, "keep")
        self.validation_data = validation_data
        self.eval_every = _positive(eval_every, "eval_every", allow_none=True)
        self.log_every = _positive(log_every, "log_every")
        self.name, self.params = name, params
        self.run: Run | None = None
        self._owned = False
        self._step = 0
        self._sampler: system_metrics.SystemSampler | None = None
        self._center: keras.Model | None = None
        self._evaluated = -1  # the step of the last evaluation
        self._train_seconds = 0.0
        self._batch_start: float | None = None
        self._batches = 0  # of this fit: its first traces the step (start-up, not training)
        self._counted = -1  # the last step whose row holds the counters

    def on_train_begin(self, logs=None):
        self.run = active_run()
        self._owned = self.run is None
        if self._owned:
            self.run = start_run(name=self.name, params=self.params)
        elif self.params:
            self.run.log_params(self.params)
        self.run.log_params(optimizer_params(self.model.optimizer))
        collectives.init()  # a no-op where the script already called hvd.init()
        self._sampler = system_metrics.SystemSampler(collectives.local_rank())
        # Rank 0's: another rank's run id is its own until then (it records nothing).
        self._run_dir = Path(collectives.broadcast_object(str(self.run.run_dir)))
        self._batches = 0
        resumed = self._resume()
        self._step = self._iterations()
        # A resumed fit runs its first epoch again in part: it stops where the lost one would have.
        self._last_step = self._planned_steps() if resumed else None
        if self._step == 0:  # every rank: the evaluation takes part in collectives
            self.run.log_metrics(self._evaluation(), step=0)

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_start is not None and self._batches:
            self._train_seconds += time.perf_counter() - self._batch_start
        self._batches += 1
        # The optimizer's count, the same on every rank (and right with steps_per_execution).
        before, self._step = self._step, self._iterations()
        values: dict[str, float] = {}
        if self._step // self.log_every > before // self.log_every:
            values.update(self._train_values(logs or {}))
            self._counted = self._step
        if self.eval_every and self._step // self.eval_every > before // self.eval_every:
            values.update(self._evaluation())
        if values:
            self.run.log_metrics(values, step=self._step)
        if self.checkpoint_every and self._step // self.checkpoint_every > (
            before // self.checkpoint_every
        ):
            self._save()
        if self._last_step is not None and self._step >= self._last_step:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._evaluated != self._step:  # not twice at one step (eval_every may end there)
            values = self._evaluation()
            if self._counted == self._step:  # the store keeps one value of a key at a step
                values = {k: v for k, v in values.items() if k not in self._counters()}
            self.run.log_metrics(values, step=self._step)
        if self._saved != self._step:
            self._save()
        if self.run.recording:  # the evaluation left the center in it
            self._center.save(self.run.run_dir / "center.keras", include_optimizer=False)
        if self._owned:
            self.run.end()

    def _resume(self) -> bool:
        """Every rank restores its own part of rank 0's last checkpoint, when the run resumes."""
        self._saved = -1
        found = self.run.resumed if self.run.recording else None
        step = collectives.broadcast_object(None if found is None else int(found[1]["step"]))
        if step is None:
            return False
        opt = self.model.optimizer
        if not opt.built:
            opt.build(self.model.trainable_variables)
        d = checkpoint.step_dir(self._run_dir, step)
        try:
            checkpoint.restore_rank(d, collectives.rank(), self.model.variables, opt.variables)
        except checkpoint.CheckpointError as exc:
            raise TrackingError(str(exc).replace("--resume", "resume")) from None
        self._saved = self._evaluated = step  # the lost attempt logged both at this step
        meta = found[1] if found is not None else {}
        # A checkpoint from before the count: its wall time, an upper bound of it.
        seconds = meta.get(TRAIN_SECONDS, meta.get("wall_time", 0.0))
        self._train_seconds = float(collectives.broadcast_object(seconds))
        per_epoch = self.params.get("steps")
        if per_epoch:  # as BackupAndRestore does: fit reads it after on_train_begin
            self.model._initial_epoch = step // per_epoch
        self.run.event("resumed", f"restored the checkpoint at step {step}", step)
        return True

    def _planned_steps(self) -> int | None:
        """The step an uninterrupted fit would have ended at (None: not known)."""
        epochs, per_epoch = self.params.get("epochs"), self.params.get("steps")
        return epochs * per_epoch if epochs and per_epoch else None

    def _save(self) -> None:
        """Every rank saves, then rank 0 marks the checkpoint complete: one without meta.json
        is never resumed from."""
        opt = self.model.optimizer
        d = self._run_dir
        checkpoint.save_rank(d, self._step, collectives.rank(), self.model.variables, opt.variables)
        collectives.barrier()
        if self.run.recording:
            comm = opt.communication() if hasattr(opt, "communication") else {}
            meta = {"wall_time": self.run.elapsed, "workers": collectives.size(), **comm}
            meta[TRAIN_SECONDS] = self._train_seconds
            checkpoint.commit(d, self._step, meta, keep=self.keep)
            self.run.event("checkpointed", f"checkpoint at step {self._step}", self._step)
        self._saved = self._step

    def _iterations(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _train_values(self, logs: dict[str, Any]) -> dict[str, float]:
        values = {}
        for key, value in logs.items():
            if isinstance(value, int | float | np.floating | np.integer) or hasattr(value, "numpy"):
                values[TRAIN_LOSS if key == "loss" else f"train_{key}"] = float(value)
        values.update(self._counters())
        opt = self.model.optimizer
        try:
            values[LEARNING_RATE] = float(keras.ops.convert_to_numpy(opt.learning_rate))
        except (TypeError, ValueError, AttributeError):
            pass
        return values

    def _counters(self) -> dict[str, float]:
        """What grows with the steps (bytes, seconds), on every row a metric may be read at:
        Compare reads them at the evaluation where a target is first reached."""
        opt = self.model.optimizer
        comm = opt.communication() if hasattr(opt, "communication") else {}
        values = {k: float(comm[k]) for k in COMMUNICATION if k in comm}
        values[TRAIN_SECONDS] = self._train_seconds
        return values

    def _evaluation(self) -> dict[str, float]:
        """Every rank: the center's figures (rank 0's evaluation) and each rank's CPU and memory."""
        self._evaluated = self._step
        size = collectives.size()
        mine = system_metrics.slots(self._sampler.sample(), collectives.rank(), size)
        summed = collectives.sum_scalar(tf.constant(mine, tf.float64), "easgd_tracking_system")
        values = {**system_metrics.metrics(summed.numpy().tolist(), size), WORKERS: float(size)}
        values.update(self._counters())
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


def optimizer_params(opt) -> dict[str, Any]:
    """The optimizer's settings as `optimizer.*` parameters (scalars only); for ours, also the
    algorithm by the name a configuration gives it, so that tables and filters find it."""
    try:
        config = opt.get_config()
    except (NotImplementedError, AttributeError):
        return {}
    params = {"optimizer.class": type(opt).__name__}
    for key, value in config.items():
        if isinstance(value, bool | int | float | str) and key != "name":
            params[f"optimizer.{key}"] = value
    inner = (config.get("inner_optimizer") or {}).get("config") or {}
    if "exchange" in config:
        momentum = float(inner.get("momentum") or 0.0)
        kind = str((config.get("inner_optimizer") or {}).get("class_name", "")).lower()
        if kind == "sgd":  # as a configuration's optimizer.inner names it
            kind = (
                "nesterov"
                if momentum and inner.get("nesterov")
                else "momentum"
                if momentum
                else "sgd"
            )
        params["optimizer.algorithm"] = algorithm_of(str(config["exchange"]), kind)
        params["optimizer.inner"] = kind
        params["optimizer.learning_rate"] = inner.get("learning_rate")
        if momentum:
            params["optimizer.momentum"] = momentum
    return {k: v for k, v in params.items() if v is not None}
