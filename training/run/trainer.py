"""One rank's training: data shard, model, optimizer, the loop, evaluation and checkpoints.

Rank 0 evaluates the center and feeds the metrics sinks; the other ranks take part in the
collectives and stay quiet. TensorFlow, Keras and Horovod are imported only when a Trainer is
built, so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from training.run import signals, system_metrics
from training.run.console import progress_line, say
from training.run.metrics import (
    BYTES_SENT,
    CENTER_ACCURACY,
    CENTER_LOSS,
    COMM_SECONDS,
    CONSENSUS,
    DROPPED,
    EPOCH,
    LEARNING_RATE,
    SPREAD,
    STALENESS,
    STEP_TIME,
    TRAIN_LOSS,
    WAIT_SECONDS,
    WORKER_ACCURACY,
    WORKER_LOSS,
    WORKERS,
    FanOut,
    MetricsSink,
    RunInfo,
)
from training.schema import ExperimentConfig

# Steps between the ranks' agreement on a checkpoint asked for by a signal.
CONTROL_EVERY = 10


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

        ds = data.load(config.data, config.seed)
        self.dataset = ds
        self.shard = data.Shard(
            ds.x_train, ds.y_train, self.rank, self.size, config.data.batch_size, config.seed
        )
        self.model = models.build(config.model, ds.input_shape, ds.num_classes)
        self.center_model = models.build(config.model, ds.input_shape, ds.num_classes)
        self.optimizer = make_optimizer(config.optimizer)
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        epochs_steps = math.ceil(config.training.epochs * self.shard.steps_per_epoch)
        max_steps = config.training.max_steps
        self.total_steps = min(max_steps, epochs_steps) if max_steps else epochs_steps
        self.step = 0
        self.wall_offset = 0.0
        self.resumed_from: int | None = None
        self.diverged_at: int | None = None
        self.backup = config.optimizer.uses_backup_workers
        # A center server on rank 0 does the communication: no collective inside the loop.
        self.served = config.optimizer.served
        self.slowdown = config.resources.slow_ranks.get(self.rank, 1.0)
        self.restart_note: str | None = None
        signals.install()  # also here for a Trainer built without `python -m training`
        self._staleness_seen = (0.0, 0.0)
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
            if self.served:
                self._restore_served(d, meta)
            elif meta.get("asynchronous"):
                raise checkpoint.CheckpointError(
                    "--resume: the checkpoint is of a run on the center server, and this one's "
                    "workers all-reduce; resume it with the configuration it had"
                )
            elif meta.get("workers") != self.size:
                self._restore_resized(d, int(meta.get("workers") or 0))
            else:
                checkpoint.restore_rank(
                    d, self.rank, self.model.variables, self.optimizer.variables
                )
            self.step = int(meta["step"])
            self.wall_offset = float(meta.get("wall_time", 0.0))
            self.resumed_from = self.step

        if self.served:
            self.optimizer.start_asynchronous()

        batch = self.shard.batch
        spec_x = tf.TensorSpec((batch, *ds.input_shape), tf.float32)
        spec_y = tf.TensorSpec((batch,), tf.int64)
        self._train_step = tf.function(self._train_step_impl, input_signature=[spec_x, spec_y])
        if self.backup:
            n = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
            self._gradient_step = tf.function(
                self._gradient_step_impl, input_signature=[spec_x, spec_y]
            )
            self._apply_mean = tf.function(
                self._apply_mean_impl, input_signature=[tf.TensorSpec((n,), tf.float32)]
            )
        self._predict = tf.function(lambda m, x: m(x, training=False), reduce_retracing=True)
        self.sink = FanOut(sinks) if self.rank == 0 else None
        self.info = RunInfo(
            run_id=run_dir.name,
            run_dir=str(run_dir),
            name=config.name,
            config=config.to_dict(),
            workers=self.size,
            hosts=self.collectives.host_count(),
            source=source,
            resumed_from_step=self.resumed_from,
            total_steps=self.total_steps,
            tags=dict(config.tags),
        )

    def _restore_served(self, d: Path, meta: dict) -> None:
        """Only rank 0 saves a run whose center server communicates, so every rank restores
        rank 0's state. With backup workers that is every worker's state (they apply the same
        means); an asynchronous run restarts every worker from the center, and the inner
        optimizer's state, which belonged to one worker, starts again."""
        if not meta.get("asynchronous"):
            raise self.ckpt.CheckpointError(
                "--resume: the checkpoint is of a run whose workers all-reduce, and this one uses "
                "the center server; resume it with the configuration it had"
            )
        self.ckpt.restore_rank(d, 0, self.model.variables, self.optimizer.variables)
        if self.backup:
            return
        self._restart_from_center()
        self.restart_note = (
            f"every worker restarts from the center ({meta.get('workers')} workers before, "
            f"{self.size} now); the inner optimizer's state starts again"
        )

    def _restore_resized(self, d: Path, old: int) -> None:
        """A resume with another number of workers: a worker's own state means nothing for the
        new size, so every rank starts from one state. Synchronous SGD: rank 0's weights and
        optimizer state, which every worker shared. With a center: the center (Tree EASGD's
        group centers too), the inner optimizer's state reset. Consensus: the workers' mean."""
        opt, spec = self.optimizer, self.config.optimizer.spec
        self.ckpt.restore_rank(d, 0, self.model.variables, opt.variables)
        reset = "; the inner optimizer's state starts again"
        if spec.evaluated == "weights":
            rule, reset = "every worker restarts from rank 0's weights and optimizer state", ""
        elif spec.evaluated == "mean":
            for v, mean in zip(self.model.variables, self.ckpt.model_mean(d, old)):
                v.assign(mean)
            for state in (opt.mean, opt.previous):
                for s, x in zip(state, self.model.trainable_variables):
                    s.assign(x.value)
            self._reset_inner()
            rule = f"every worker restarts from the mean of the {old} workers' weights"
        else:
            self._restart_from_center()
            rule = "every worker restarts from the center"
        self.restart_note = f"{rule} ({old} workers before, {self.size} now){reset}"

    def _restart_from_center(self) -> None:
        for x, c in zip(self.model.trainable_variables, self.optimizer.center):
            x.assign(c.value)
        for g, c in zip(getattr(self.optimizer, "group_center", []), self.optimizer.center):
            g.assign(c.value)
        self._reset_inner()

    def _reset_inner(self) -> None:
        inner = self.optimizer.inner_optimizer
        for v in inner.variables:
            if v is not inner.iterations and "learning_rate" not in v.path:
                v.assign(self.tf.zeros_like(v.value))

    def _gradient_step_impl(self, x, y):
        """Backup workers: the loss, the rate and this step's gradient as one flat vector."""
        tf = self.tf
        lr = tf.convert_to_tensor(self.optimizer.learning_rate)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=True))
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        return loss, lr, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    def _apply_mean_impl(self, flat):
        variables = self.model.trainable_variables
        parts = self.tf.split(flat, [int(self.np.prod(v.shape)) for v in variables])
        grads = [self.tf.reshape(g, v.shape) for g, v in zip(parts, variables)]
        self.optimizer.apply(grads, variables)

    def _backup_step(self, x, y) -> tuple[float, float, float]:
        """(loss, rate, compute seconds); the step count jumps when this worker was late."""
        t0 = time.perf_counter()
        loss, lr, flat = self._gradient_step(x, y)
        compute = time.perf_counter() - t0
        means, done = self.optimizer.backup_step(flat.numpy(), self.step)
        for mean in means:
            self._apply_mean(mean)
        self.step = done - 1  # the loop adds this step
        return float(loss.numpy()), float(lr.numpy()), compute

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

    def _evaluate(self, model) -> tuple[float, float]:
        np = self.np
        x, y = self.dataset.x_test, self.dataset.y_test
        total_loss, correct = 0.0, 0
        for i in range(0, len(x), 500):
            logits = self._predict(model, x[i : i + 500]).numpy()
            total_loss += float(self.loss_fn(y[i : i + 500], logits).numpy()) * len(logits)
            correct += int((np.argmax(logits, axis=1) == y[i : i + 500]).sum())
        return total_loss / len(x), correct / len(x)

    def _evaluation(self) -> dict[str, float]:
        """Spread needs every rank (one scalar all-reduce; the workers' mean, with no center, one
        more); the center is scored on rank 0."""
        tf = self.tf
        if self.served:
            return self._asynchronous_evaluation()
        self.optimizer.prepare_evaluation()
        center = self.optimizer.evaluation_variables
        local = tf.add_n(
            [
                tf.reduce_sum(
                    tf.square(tf.cast(x.value, tf.float64) - tf.cast(c.value, tf.float64))
                )
                for x, c in zip(self.model.trainable_variables, center)
            ]
        )
        # One all-reduce carries the spread, how many ranks saw a non-finite loss (so that every
        # rank stops on the same step when training diverged) and every rank's system metrics.
        mine = system_metrics.slots(self.system.sample(), self.rank, self.size)
        total = self.collectives.sum_scalar(
            tf.concat(
                [
                    tf.reshape(local, [1]),
                    tf.constant([float(self.diverged_at is not None), *mine], tf.float64),
                ],
                0,
            ),
            "easgd_spread",
        ).numpy()
        spread = float(total[0])
        if total[1] > 0:
            raise FloatingPointError(
                f"training diverged (non-finite train loss on {int(total[1])} of {self.size} "
                f"ranks, first here at step {self.diverged_at or self.step}); lower "
                "optimizer.learning_rate or alpha"
            )
        if self.rank != 0:
            return {}
        values = {
            **self._scores(),
            SPREAD: spread,
            **system_metrics.metrics(list(total[2:]), self.size),
        }
        if self.config.optimizer.spec.evaluated == "mean":
            # No center: the spread is around the workers' mean; per worker, it is CDSGD's
            # consensus distance.
            values[CONSENSUS] = spread / self.size
        return values

    def _asynchronous_evaluation(self) -> dict[str, float]:
        """No collective (a worker never waits for another): a rank that diverged tells the
        center, which tells the others at their next exchange; rank 0 scores a snapshot."""
        if self.diverged_at is not None:
            reason = (
                f"training diverged (non-finite train loss on rank {self.rank} at step "
                f"{self.diverged_at}); lower optimizer.learning_rate or alpha"
            )
            self.optimizer.abort_asynchronous(reason)
            raise FloatingPointError(reason)
        if self.rank != 0:
            return {}
        self.optimizer.prepare_evaluation()
        values = {
            **self._scores(),
            **system_metrics.metrics(system_metrics.slots(self.system.sample(), 0, 1), 1),
        }
        if self.optimizer.exchange == "elastic":
            values[SPREAD] = self.optimizer.spread
        _, stats = self.optimizer.center_status()
        if self.backup:
            values[DROPPED] = float(stats[:, 1].sum())
            return values
        exchanges, total = float(stats[:, 0].sum()), float(stats[:, 1].sum())
        seen_exchanges, seen_total = self._staleness_seen
        if exchanges > seen_exchanges:
            values[STALENESS] = (total - seen_total) / (exchanges - seen_exchanges)
        self._staleness_seen = (exchanges, total)
        return values

    def _scores(self) -> dict[str, float]:
        """Rank 0: the evaluated model's and its own weights' test loss and accuracy."""
        self._load_center()
        c_loss, c_acc = self._evaluate(self.center_model)
        w_loss, w_acc = self._evaluate(self.model)
        return {
            CENTER_LOSS: c_loss,
            CENTER_ACCURACY: c_acc,
            WORKER_LOSS: w_loss,
            WORKER_ACCURACY: w_acc,
            WORKERS: float(self.size),
        }

    def _load_center(self) -> None:
        for target, value in zip(
            self.center_model.trainable_variables, self.optimizer.evaluation_variables
        ):
            target.assign(value.value)
        for target, value in zip(
            self.center_model.non_trainable_variables, self.model.non_trainable_variables
        ):
            target.assign(value.value)

    def _checkpoint(self, wall_time: float) -> None:
        self._save(wall_time)
        self._saved_at = time.time()  # what was asked before now, this checkpoint serves

    def _save(self, wall_time: float) -> None:
        if self.served:
            if self.rank == 0:
                self.optimizer.prepare_evaluation()  # the server's center into the variables
                self.ckpt.save_rank(
                    self.run_dir, self.step, 0, self.model.variables, self.optimizer.variables
                )
                self.ckpt.commit(
                    self.run_dir,
                    self.step,
                    {"wall_time": wall_time, "workers": self.size, "asynchronous": True},
                    keep=self.config.checkpoint.keep,
                )
                self.sink.event("checkpointed", f"checkpoint at step {self.step}", self.step)
            return
        self.ckpt.save_rank(
            self.run_dir, self.step, self.rank, self.model.variables, self.optimizer.variables
        )
        self.collectives.barrier()
        if self.rank == 0:
            comm = self.optimizer.communication()
            self.ckpt.commit(
                self.run_dir,
                self.step,
                {
                    "wall_time": wall_time,
                    "workers": self.size,
                    **comm,
                },
                keep=self.config.checkpoint.keep,
            )
            self.sink.event("checkpointed", f"checkpoint at step {self.step}", self.step)

    def run(self) -> dict[str, float]:
        cfg = self.config
        if self.rank == 0:
            self.sink.start(self.info)
            what = f"resumed at step {self.step}" if self.resumed_from is not None else "started"
            if self.restart_note:
                what += f" ({self.restart_note})"
            self.sink.event(
                "started",
                f"{what}: {cfg.optimizer.algorithm.value} on {self.size} "
                f"workers, {self.total_steps} steps",
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
                    row = {EPOCH: 0.0, BYTES_SENT: 0.0, COMM_SECONDS: 0.0, **values}
                    self.sink.log(0, 0.0, row)
                    self._progress(0, values)
            last = self._loop(start)
        finally:
            if self.served:
                self.optimizer.stop_asynchronous()
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
            if self.backup:
                loss, lr, compute = self._backup_step(x, y)
            else:
                if self.served:
                    self.optimizer.before_step(self.step)
                t1 = time.perf_counter()
                loss, lr = (float(v.numpy()) for v in self._train_step(x, y))
                compute = time.perf_counter() - t1
                if self.served:
                    self.optimizer.after_step(self.step)
            if self.slowdown > 1 and self.step > first:  # resources.slow_ranks, a testing aid
                time.sleep((self.slowdown - 1) * compute)  # (not the first: it traces)
            step_time = time.perf_counter() - t0
            self.step += 1
            if not math.isfinite(loss) and self.diverged_at is None:
                self.diverged_at = self.step
            at_end = self.step >= self.total_steps
            # A served run's last evaluation waits for every worker (below).
            evaluate = self._crossed(before, cfg.training.eval_every) or at_end
            if self.served and at_end:
                row = self._row(loss, lr, step_time, {})
                break
            values = self._evaluation() if evaluate else {}
            if self.rank == 0 and (evaluate or self._crossed(before, cfg.training.log_every)):
                row = self._row(loss, lr, step_time, values)
                self.sink.log(self.step, time.perf_counter() - start, row)
                last.update(row)
                if evaluate:
                    self._evaluated(row)
            asked = self._asked(before)  # every rank, every time: it may all-reduce
            if (every and self._crossed(before, every)) or at_end or asked:
                self._checkpoint(time.perf_counter() - start)
        if self.served:
            self.optimizer.finish_asynchronous()
            values = self._evaluation()
            if self.rank == 0:
                row = {
                    **self._row(
                        row.get(TRAIN_LOSS), row.get(LEARNING_RATE), row.get(STEP_TIME), {}
                    ),
                    **values,
                }
                self.sink.log(self.step, time.perf_counter() - start, row)
                last.update(row)
                self._evaluated(row)
                self._asynchronous_summary()
            self._checkpoint(time.perf_counter() - start)
        return last

    def _asked(self, before: int) -> bool:
        """A checkpoint on demand (SIGUSR1, what `easgd jobs checkpoint` sends every rank on the
        service's host, or the request file it leaves in the run directory for rank 0). The
        ranks that all-reduce must save on the same step: every CONTROL_EVERY steps they agree
        with one scalar all-reduce whether any was asked; on the center server rank 0 saves
        alone, at once."""
        # Rank 0 looks for the request file only at agreement steps: not a stat every step.
        boundary = self._crossed(before, CONTROL_EVERY)
        mine = self.run_dir if self.rank == 0 and boundary else None
        if self.served:
            return signals.take(self._saved_at, mine) and self.rank == 0
        if not boundary:
            return False
        flag = self.tf.constant(float(signals.take(self._saved_at, mine)), self.tf.float64)
        return float(self.collectives.sum_scalar(flag, "easgd_control").numpy()) > 0

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
            **values,
        }
        if "wait_seconds" in comm:
            row[WAIT_SECONDS] = comm["wait_seconds"]
        return {k: v for k, v in row.items() if v is not None}

    def _evaluated(self, row: dict[str, float]) -> None:
        self.sink.event("evaluated", f"center accuracy {row[CENTER_ACCURACY]:.4f}", self.step)
        self.sink.flush()
        self._progress(self.step, row)

    def _asynchronous_summary(self) -> None:
        _, stats = self.optimizer.center_status()
        if self.backup:
            parts = [
                f"rank {r}: {int(n)} gradients, {int(late)} late (dropped; at most {int(m)} "
                f"steps behind), waited {w:.2f} s"
                for r, (n, late, m, w) in enumerate(stats)
            ]
            self.sink.event("backup_workers", "; ".join(parts), self.step)
            return
        parts = [
            f"rank {r}: {int(n)} exchanges, staleness mean {s / max(n, 1):.2f} max {int(m)}, "
            f"waited {w:.2f} s"
            for r, (n, s, m, w) in enumerate(stats)
        ]
        self.sink.event("asynchronous", "; ".join(parts), self.step)

    def _progress(self, step: int, row: dict[str, float]) -> None:
        say(progress_line(step, self.total_steps, step / self.shard.steps_per_epoch, row))
