"""One rank's training: data shard, model, optimizer, the loop, evaluation and checkpoints.

Rank 0 evaluates the center and feeds the metrics sinks; the other ranks take part in the
collectives and stay quiet. TensorFlow, Keras and Horovod are imported only when a Trainer is
built, so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from training.run import drivers, signals, system_metrics
from training.run.console import progress_line, say
from training.run.metrics import (
    BYTES_SENT,
    CENTER_LOSS,
    COMM_SECONDS,
    EPOCH,
    LEARNING_RATE,
    STEP_TIME,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    WAIT_SECONDS,
    WORKER_LOSS,
    WORKERS,
    FanOut,
    MetricsSink,
    RunInfo,
)
from training.schema import ExperimentConfig


class Trainer:
    """One rank's training; built by `run()`."""

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: Path,
        sinks: list[MetricsSink],
        source: str,
        resume: bool,
    ):
        import keras
        import numpy as np
        import tensorflow as tf

        from training.exchanges import collectives
        from training.exchanges.optimizer import make_optimizer
        from training.run import checkpoint
        from training.zoo import data, models

        self.tf, self.np, self.keras = tf, np, keras
        self.ckpt = checkpoint
        self.collectives = collectives
        self.config = config
        self.run_dir = run_dir
        self._saved_at = 0.0
        self.rank = collectives.rank()
        self.size = collectives.size()
        self.source = source
        keras.utils.set_random_seed(config.seed)

        ds = data.load(config.data, config.seed, self.rank, self.size)
        self.dataset = ds
        # A rank's own data (a loader given the rank): every rank counts from the smallest.
        smallest = min(collectives.allgather_object(len(ds.x_train))) if ds.per_rank else None
        self.shard = data.Shard(
            ds.x_train,
            ds.y_train,
            self.rank,
            self.size,
            config.data.batch_size,
            config.seed,
            smallest,
        )
        self.model = models.build(config.model, ds.input_shape, ds.num_classes)
        self.center_model = models.build(config.model, ds.input_shape, ds.num_classes)
        self.optimizer = make_optimizer(config.optimizer)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn, self.score_fns = models.loss_and_scores(config.model)
        self.score_key = f"center_{next(iter(self.score_fns))}"

        epochs_steps = math.ceil(config.training.epochs * self.shard.steps_per_epoch)
        max_steps = config.training.max_steps
        self.total_steps = min(max_steps, epochs_steps) if max_steps else epochs_steps
        self.step = 0
        self.wall_offset = 0.0
        self.train_seconds = 0.0
        self.resumed_from: int | None = None
        self.diverged_at: int | None = None
        # How the steps communicate: inside them, or through rank 0's center server.
        self.driver = drivers.choose(self)
        self.slowdown = config.resources.slow_ranks.get(self.rank, 1.0)
        self.restart_note: str | None = None
        signals.install()  # also here for a Trainer built without `python -m training`
        self.system = system_metrics.SystemSampler(
            collectives.local_rank(), bool(tf.config.list_physical_devices("GPU"))
        )
        if resume:
            found = checkpoint.latest(run_dir)
            if found is None:
                raise checkpoint.CheckpointError(
                    f"--resume: {run_dir} has no complete checkpoint to resume from"
                )
            d, meta = found
            self.driver.resume(d, meta)
            self.step = int(meta["step"])
            self.wall_offset = float(meta.get("wall_time", 0.0))
            # Checkpoints older than the count have only the wall time, an upper bound of it.
            self.train_seconds = float(meta.get(TRAIN_SECONDS, self.wall_offset))
            self.resumed_from = self.step

        batch = self.shard.batch
        spec_x = tf.TensorSpec((batch, *ds.input_shape), tf.float32)
        spec_y = tf.TensorSpec((batch, *ds.y_train.shape[1:]), tf.as_dtype(ds.y_train.dtype))
        self._train_step = tf.function(self._train_step_impl, input_signature=[spec_x, spec_y])
        self.driver.start(spec_x, spec_y)
        self._predict = tf.function(lambda m, x: m(x, training=False), reduce_retracing=True)
        self.sink = FanOut(sinks) if self.rank == 0 else None
        self.info = RunInfo(
            run_id=run_dir.name,
            run_dir=str(run_dir),
            name=config.name,
            config=config.to_dict(),
            workers=self.size,
            hosts=self.collectives.host_count(),
            host_names=self.collectives.host_names(),
            source=source,
            resumed_from_step=self.resumed_from,
            total_steps=self.total_steps,
            tags=dict(config.tags),
        )

    def _train_step_impl(self, x, y):
        """One step; returns its loss and the learning rate it used (a schedule's value at this
        step, read before the step advances the optimizer's iterations)."""
        tf = self.tf
        lr = tf.convert_to_tensor(self.optimizer.learning_rate)
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = self.loss_fn(y, logits)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss, lr

    def _evaluate(self, model) -> tuple[float, dict[str, float]]:
        np = self.np
        x, y = self.dataset.x_test, self.dataset.y_test
        total_loss = 0.0
        totals = dict.fromkeys(self.score_fns, 0.0)
        for i in range(0, len(x), 500):
            logits = self._predict(model, x[i : i + 500]).numpy()
            total_loss += float(self.loss_fn(y[i : i + 500], logits).numpy()) * len(logits)
            for name, fn in self.score_fns.items():
                totals[name] += float(np.sum(fn(y[i : i + 500], logits)))
        return total_loss / len(x), {name: t / len(x) for name, t in totals.items()}

    def _evaluation(self) -> dict[str, float]:
        return self.driver.evaluation()

    def _scores(self) -> dict[str, float]:
        """Rank 0: the evaluated model's and its own weights' test loss and scores (accuracy,
        or the configuration's model.metrics)."""
        self._load_center()
        c_loss, c_scores = self._evaluate(self.center_model)
        w_loss, w_scores = self._evaluate(self.model)
        return {
            CENTER_LOSS: c_loss,
            **{f"center_{name}": v for name, v in c_scores.items()},
            WORKER_LOSS: w_loss,
            **{f"worker_{name}": v for name, v in w_scores.items()},
            WORKERS: float(self.size),
        }

    def _load_center(self) -> None:
        load_center(self.center_model, self.model, self.optimizer.evaluation_variables)

    def _checkpoint(self, wall_time: float) -> None:
        self.driver.save(wall_time)
        self._saved_at = time.time()  # what was asked before now, this checkpoint serves

    def run(self) -> dict[str, float]:
        cfg = self.config
        if self.rank == 0:
            self.sink.start(self.info)
            what = f"resumed at step {self.step}" if self.resumed_from is not None else "started"
            if self.restart_note:
                what += f" ({self.restart_note})"
            names = self.info.host_names or []
            where = f" on {', '.join(names)}" if len(names) > 1 else ""
            self.sink.event(
                "started",
                f"{what}: {cfg.optimizer.algorithm.value} on {self.size} "
                f"workers{where}, {self.total_steps} steps",
                self.step,
            )
            say(
                f"easgd: run {self.info.run_id} {what}: {cfg.optimizer.algorithm.value}, "
                f"{self.size} workers, {self.total_steps} steps "
                f"({self.shard.steps_per_epoch} per epoch), directory {self.run_dir}"
            )
        start = time.perf_counter() - self.wall_offset
        try:
            if self.step == 0:
                values = self._evaluation()
                if self.rank == 0:
                    row = {EPOCH: 0.0, BYTES_SENT: 0.0, COMM_SECONDS: 0.0, TRAIN_SECONDS: 0.0}
                    row |= values
                    self.sink.log(0, 0.0, row)
                    self._progress(0, values)
            last = self._loop(start)
        finally:
            self.driver.stop()
        if self.rank == 0:
            self._load_center()
            self.center_model.save(self.run_dir / "center.keras")
        return last

    def _loop(self, start: float) -> dict[str, float]:
        cfg, every = self.config, self.config.checkpoint.every
        last: dict[str, float] = {}
        row: dict[str, float] = {}
        first = self.step
        while self.step < self.total_steps:
            x, y = self.shard.batch_at(self.step)
            before = self.step
            t0 = time.perf_counter()
            loss, lr, compute = self.driver.step(x, y)
            if self.slowdown > 1 and self.step > first:  # resources.slow_ranks, a testing aid
                time.sleep((self.slowdown - 1) * compute)  # (not the first: it traces)
            step_time = time.perf_counter() - t0
            if before > first:  # the first step of a launch traces the graph: start-up
                self.train_seconds += step_time
            self.step += 1
            if not math.isfinite(loss) and self.diverged_at is None:
                self.diverged_at = self.step
            at_end = self.step >= self.total_steps
            evaluate = self._crossed(before, cfg.training.eval_every) or at_end
            if at_end and self.driver.waits_at_end:  # its `finish`, below
                row = self._row(loss, lr, step_time, {})
                break
            values = self._evaluation() if evaluate else {}
            if self.rank == 0 and (evaluate or self._crossed(before, cfg.training.log_every)):
                row = self._row(loss, lr, step_time, values)
                self.sink.log(self.step, time.perf_counter() - start, row)
                last.update(row)
                if evaluate:
                    self._evaluated(row)
            asked = self.driver.asked(before)  # every rank, every time: it may all-reduce
            if (every and self._crossed(before, every)) or at_end or asked:
                self._checkpoint(time.perf_counter() - start)
        last.update(self.driver.finish(start, row))
        return last

    def _crossed(self, before: int, every: int) -> bool:
        """Whether the step count passed a multiple of `every` (a late backup worker jumps)."""
        return self.step // every > before // every

    def _row(self, loss, lr, step_time, values: dict[str, float]) -> dict[str, float]:
        if self.rank != 0:
            return {}
        comm = self.optimizer.communication()
        row = {
            EPOCH: self.step / self.shard.steps_per_epoch,
            TRAIN_LOSS: loss,
            LEARNING_RATE: lr,
            BYTES_SENT: comm["bytes_sent"],
            COMM_SECONDS: comm["comm_seconds"],
            STEP_TIME: step_time,
            TRAIN_SECONDS: self.train_seconds,
            **values,
        }
        if "wait_seconds" in comm:
            row[WAIT_SECONDS] = comm["wait_seconds"]
        return {k: v for k, v in row.items() if v is not None}

    def _evaluated(self, row: dict[str, float]) -> None:
        what = self.score_key.removeprefix("center_").replace("_", " ")
        self.sink.event("evaluated", f"center {what} {row[self.score_key]:.4f}", self.step)
        self.sink.flush()
        self._progress(self.step, row)

    def _progress(self, step: int, row: dict[str, float]) -> None:
        say(progress_line(step, self.total_steps, step / self.shard.steps_per_epoch, row))


def load_center(target, model, center_variables) -> None:
    """`target`, a copy of `model`, given the center's weights (`evaluation_variables`, after
    `prepare_evaluation`) and the model's own non-trainable state (batch norm statistics)."""
    for variable, value in zip(target.trainable_variables, center_variables):
        variable.assign(value.value)
    for variable, value in zip(target.non_trainable_variables, model.non_trainable_variables):
        variable.assign(value.value)
