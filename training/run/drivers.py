"""How one rank's steps communicate, chosen once when the trainer starts.

- `Collective`: the exchange runs inside the training step (all-reduce, all-gather...); every rank
  evaluates, saves and agrees on checkpoints in lockstep with the others.
- `Served`: an asynchronous form; rank 0's center server carries the communication
  (training/center/), each worker exchanges around its steps on its own clock, and no collective
  runs inside the loop: rank 0 alone evaluates a snapshot of the center and saves.
- `Backup`: synchronous SGD with backup workers, on the same server: a step sends its gradient
  and applies the means the server answers (every step a worker missed, in order).

The trainer (training/run/trainer.py) owns the loop, the data, the model and the metrics rows; a
driver owns what differs: resuming, the step, the evaluation, saving and the end of the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from training.center.server import BACKUP, DOWNPOUR, ELASTIC
from training.run import signals, system_metrics
from training.run.metrics import (
    CONSENSUS,
    DROPPED,
    LEARNING_RATE,
    SPREAD,
    STALENESS,
    STEP_TIME,
    TRAIN_LOSS,
    TRAIN_SECONDS,
)

if TYPE_CHECKING:
    from training.run.trainer import Trainer

# Steps between the ranks' agreement on a checkpoint asked for by a signal.
CONTROL_EVERY = 10


class Collective:
    """The workers communicate inside the step: everything that involves them all is collective."""

    # Whether the last step's evaluation waits for every worker, after the loop.
    waits_at_end = False

    def __init__(self, trainer: Trainer):
        self.t = trainer
        # An agreement on checkpoints put off while an overlapped round was in flight, and its
        # answer once reached.
        self._control_waiting = False
        self._agreed: bool | None = None

    def resume(self, d: Path, meta: dict) -> None:
        t = self.t
        if meta.get("asynchronous"):
            raise t.ckpt.CheckpointError(
                "--resume: the checkpoint is of a run on the center server, and this one's "
                "workers all-reduce; resume it with the configuration it had"
            )
        if meta.get("workers") != t.size:
            self._restore_resized(d, int(meta.get("workers") or 0))
        else:
            t.ckpt.restore_rank(d, t.rank, t.model.variables, t.optimizer.variables)

    def _restore_resized(self, d: Path, old: int) -> None:
        """A resume with another number of workers: a worker's own state means nothing for the
        new size, so every rank starts from one state. Synchronous SGD: rank 0's weights and
        optimizer state, which every worker shared. With a center: the center (Tree EASGD's
        group centers too), the inner optimizer's state reset. Consensus: the workers' mean."""
        t = self.t
        opt = t.optimizer
        t.ckpt.restore_rank(d, 0, t.model.variables, opt.variables)
        reset = "; the inner optimizer's state starts again"
        evaluated = opt.exchanger.evaluated
        if evaluated == "weights":
            rule, reset = "every worker restarts from rank 0's weights and optimizer state", ""
        elif evaluated == "mean":
            for v, mean in zip(t.model.variables, t.ckpt.model_mean(d, old)):
                v.assign(mean)
            opt.exchanger.restart(t.model.trainable_variables)
            reset_inner(t)
            rule = f"every worker restarts from the mean of the {old} workers' weights"
        else:
            restart_from_center(t)
            rule = "every worker restarts from the center"
        t.restart_note = f"{rule} ({old} workers before, {t.size} now){reset}"

    def start(self, spec_x, spec_y) -> None:
        """Once restored, before the first step."""

    def step(self, x, y) -> tuple[float, float, float]:
        """(loss, rate, compute seconds) of one step. Overlapped rounds (`overlap_steps`) leave
        after the step that posts them, land before the step they are due at (the wait counts
        in that step's seconds), and after the last step."""
        t, opt = self.t, self.t.optimizer
        t0 = time.perf_counter()
        if opt.overlapped:
            opt.before_step(t.step)
            if self._control_waiting and not opt.in_flight:
                self._control_waiting, self._agreed = False, self._agree()
        loss, lr = (float(v.numpy()) for v in t._train_step(x, y))
        if opt.overlapped:
            opt.after_step(t.step)
            if t.step + 1 >= t.total_steps:
                opt.land()
        return loss, lr, time.perf_counter() - t0

    def evaluation(self) -> dict[str, float]:
        """Spread needs every rank (one scalar all-reduce; the workers' mean, with no center, one
        more); the center is scored on rank 0."""
        t = self.t
        tf = t.tf
        t.optimizer.prepare_evaluation()
        center = t.optimizer.evaluation_variables
        local = tf.add_n(
            [
                tf.reduce_sum(
                    tf.square(tf.cast(x.value, tf.float64) - tf.cast(c.value, tf.float64))
                )
                for x, c in zip(t.model.trainable_variables, center)
            ]
        )
        # One all-reduce carries the spread, how many ranks saw a non-finite loss (so that every
        # rank stops on the same step when training diverged) and every rank's system metrics.
        mine = system_metrics.slots(t.system.sample(), t.rank, t.size)
        total = t.collectives.sum_scalar(
            tf.concat(
                [
                    tf.reshape(local, [1]),
                    tf.constant([float(t.diverged_at is not None), *mine], tf.float64),
                ],
                0,
            ),
            "easgd_spread",
        ).numpy()
        spread = float(total[0])
        if total[1] > 0:
            raise FloatingPointError(
                f"training diverged (non-finite train loss on {int(total[1])} of {t.size} "
                f"ranks, first here at step {t.diverged_at or t.step}); lower "
                "optimizer.learning_rate or alpha"
            )
        if t.rank != 0:
            return {}
        values = {
            **t._scores(),
            SPREAD: spread,
            **system_metrics.metrics(list(total[2:]), t.size),
        }
        if t.optimizer.exchanger.evaluated == "mean":
            # No center: the spread is around the workers' mean; per worker, it is CDSGD's
            # consensus distance.
            values[CONSENSUS] = spread / t.size
        return values

    def save(self, wall_time: float) -> None:
        t = self.t
        t.optimizer.land()  # a round in flight lands (every rank saves on the same step)
        t.ckpt.save_rank(t.run_dir, t.step, t.rank, t.model.variables, t.optimizer.variables)
        t.collectives.barrier()
        if t.rank == 0:
            meta = {"wall_time": wall_time, "workers": t.size, **t.optimizer.communication()}
            meta[TRAIN_SECONDS] = t.train_seconds
            t.ckpt.commit(t.run_dir, t.step, meta, keep=t.config.checkpoint.keep)
            t.sink.event("checkpointed", f"checkpoint at step {t.step}", t.step)

    def asked(self, before: int) -> bool:
        """A checkpoint on demand (SIGUSR1, what `easgd jobs checkpoint` sends every rank on the
        service's host, or the request file it leaves in the run directory for rank 0). The
        ranks must save on the same step: every CONTROL_EVERY steps they agree with one scalar
        all-reduce whether any was asked."""
        t = self.t
        if self._agreed is not None:  # agreed before this step, with no round in flight
            agreed, self._agreed = self._agreed, None
            return agreed
        if not (t._crossed(before, CONTROL_EVERY) or self._control_waiting):
            return False
        # An overlapped round in flight would hold the agreement's all-reduce up: every rank
        # puts it off to the next step whose landing leaves none in flight (`step`).
        self._control_waiting = t.optimizer.in_flight
        return False if self._control_waiting else self._agree()

    def _agree(self) -> bool:
        """Whether any rank was asked for a checkpoint: one scalar all-reduce. Rank 0 looks for
        the request file only here: not a stat every step."""
        t = self.t
        mine = t.run_dir if t.rank == 0 else None
        flag = t.tf.constant(float(signals.take(t._saved_at, mine)), t.tf.float64)
        return float(t.collectives.sum_scalar(flag, "easgd_control").numpy()) > 0

    def finish(self, start: float, row: dict[str, float]) -> dict[str, float]:
        """After the loop: the last row, when it was left for now."""
        return {}

    def stop(self) -> None:
        """Whatever happened."""
        self.t.optimizer.stop_overlap()


class Served(Collective):
    """An asynchronous form: rank 0's center server carries the communication."""

    waits_at_end = True
    # The event that ends the run: per rank, exchanges n, staleness sum s and max m, seconds
    # waited w.
    summary_event = "asynchronous"
    rank_line = "rank {r}: {n} exchanges, staleness mean {mean:.2f} max {m}, waited {w:.2f} s"

    def __init__(self, trainer: Trainer):
        super().__init__(trainer)
        self._staleness_seen = (0.0, 0.0)

    def resume(self, d: Path, meta: dict) -> None:
        """Only rank 0 saves a run whose center server communicates, so every rank restores
        rank 0's state; an asynchronous run restarts every worker from the center, and the inner
        optimizer's state, which belonged to one worker, starts again."""
        t = self.t
        self._restore_rank_0(d, meta)
        restart_from_center(t)
        t.restart_note = (
            f"every worker restarts from the center ({meta.get('workers')} workers before, "
            f"{t.size} now); the inner optimizer's state starts again"
        )

    def _restore_rank_0(self, d: Path, meta: dict) -> None:
        t = self.t
        if not meta.get("asynchronous"):
            raise t.ckpt.CheckpointError(
                "--resume: the checkpoint is of a run whose workers all-reduce, and this one uses "
                "the center server; resume it with the configuration it had"
            )
        t.ckpt.restore_rank(d, 0, t.model.variables, t.optimizer.variables)

    def start(self, spec_x, spec_y) -> None:
        self.t.optimizer.start_asynchronous()

    def step(self, x, y) -> tuple[float, float, float]:
        opt, step = self.t.optimizer, self.t.step
        opt.before_step(step)
        out = super().step(x, y)
        opt.after_step(step)
        return out

    def evaluation(self) -> dict[str, float]:
        """No collective (a worker never waits for another): a rank that diverged tells the
        center, which tells the others at their next exchange; rank 0 scores a snapshot."""
        t = self.t
        if t.diverged_at is not None:
            reason = (
                f"training diverged (non-finite train loss on rank {t.rank} at step "
                f"{t.diverged_at}); lower optimizer.learning_rate or alpha"
            )
            t.optimizer.abort_asynchronous(reason)
            raise FloatingPointError(reason)
        if t.rank != 0:
            return {}
        t.optimizer.prepare_evaluation()
        values = {
            **t._scores(),
            **system_metrics.metrics(system_metrics.slots(t.system.sample(), 0, 1), 1),
        }
        if t.optimizer.spread is not None:
            values[SPREAD] = t.optimizer.spread
        _, stats = t.optimizer.center_status()
        return {**values, **self._server_figures(stats)}

    def _server_figures(self, stats) -> dict[str, float]:
        """The mean staleness of the exchanges since the last evaluation."""
        exchanges, total = float(stats[:, 0].sum()), float(stats[:, 1].sum())
        seen_exchanges, seen_total = self._staleness_seen
        self._staleness_seen = (exchanges, total)
        if exchanges > seen_exchanges:
            return {STALENESS: (total - seen_total) / (exchanges - seen_exchanges)}
        return {}

    def save(self, wall_time: float) -> None:
        t = self.t
        if t.rank != 0:
            return
        t.optimizer.prepare_evaluation()  # the server's center into the variables
        t.ckpt.save_rank(t.run_dir, t.step, 0, t.model.variables, t.optimizer.variables)
        meta = {"wall_time": wall_time, "workers": t.size, "asynchronous": True}
        meta[TRAIN_SECONDS] = t.train_seconds
        t.ckpt.commit(t.run_dir, t.step, meta, keep=t.config.checkpoint.keep)
        t.sink.event("checkpointed", f"checkpoint at step {t.step}", t.step)

    def asked(self, before: int) -> bool:
        """On the center server rank 0 saves alone, at once."""
        t = self.t
        mine = t.run_dir if t.rank == 0 and t._crossed(before, CONTROL_EVERY) else None
        return signals.take(t._saved_at, mine) and t.rank == 0

    def finish(self, start: float, row: dict[str, float]) -> dict[str, float]:
        """The last evaluation waits for every worker."""
        t = self.t
        t.optimizer.finish_asynchronous()
        values = self.evaluation()
        if t.rank == 0:
            last = row.get(TRAIN_LOSS), row.get(LEARNING_RATE), row.get(STEP_TIME)
            row = {**t._row(*last, {}), **values}
            t.sink.log(t.step, time.perf_counter() - start, row)
            t._evaluated(row)
            self._summary()
        t._checkpoint(time.perf_counter() - start)
        # A sharded center's servers live on several ranks: none stops before rank 0's last
        # reads of them are done.
        t.collectives.barrier()
        return row if t.rank == 0 else {}

    def _summary(self) -> None:
        """One event that says, rank by rank, what the server counted."""
        _, stats = self.t.optimizer.center_status()
        parts = [
            self.rank_line.format(r=r, n=int(n), s=int(s), mean=s / max(n, 1), m=int(m), w=w)
            for r, (n, s, m, w) in enumerate(stats)
        ]
        self.t.sink.event(self.summary_event, "; ".join(parts), self.t.step)

    def stop(self) -> None:
        self.t.optimizer.stop_asynchronous()


class Backup(Served):
    """Synchronous SGD with backup workers: every worker applies the same means, so every
    worker's state is rank 0's, and a resume restores it everywhere."""

    # Per rank: gradients n, late ones s (at most m steps behind), seconds waited w.
    summary_event = "backup_workers"
    rank_line = (
        "rank {r}: {n} gradients, {s} late (dropped; at most {m} steps behind), waited {w:.2f} s"
    )

    def resume(self, d: Path, meta: dict) -> None:
        self._restore_rank_0(d, meta)

    def start(self, spec_x, spec_y) -> None:
        t = self.t
        tf = t.tf
        n = sum(int(t.np.prod(v.shape)) for v in t.model.trainable_variables)
        self._gradient_step = tf.function(
            self._gradient_step_impl, input_signature=[spec_x, spec_y]
        )
        self._apply_mean = tf.function(
            self._apply_mean_impl, input_signature=[tf.TensorSpec((n,), tf.float32)]
        )
        super().start(spec_x, spec_y)

    def _gradient_step_impl(self, x, y):
        """The loss, the rate and this step's gradient as one flat vector."""
        t = self.t
        tf = t.tf
        lr = tf.convert_to_tensor(t.optimizer.learning_rate)
        variables = t.model.trainable_variables
        with tf.GradientTape() as tape:
            loss = t.loss_fn(y, t.model(x, training=True))
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        return loss, lr, tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

    def _apply_mean_impl(self, flat):
        t = self.t
        variables = t.model.trainable_variables
        parts = t.tf.split(flat, [int(t.np.prod(v.shape)) for v in variables])
        grads = [t.tf.reshape(g, v.shape) for g, v in zip(parts, variables)]
        t.optimizer.apply(grads, variables)

    def step(self, x, y) -> tuple[float, float, float]:
        """The step count jumps when this worker was late."""
        t = self.t
        t0 = time.perf_counter()
        loss, lr, flat = self._gradient_step(x, y)
        compute = time.perf_counter() - t0
        means, done = t.optimizer.backup_step(flat.numpy(), t.step)
        for mean in means:
            self._apply_mean(mean)
        t.step = done - 1  # the loop adds this step
        return float(loss.numpy()), float(lr.numpy()), compute

    def _server_figures(self, stats) -> dict[str, float]:
        return {DROPPED: float(stats[:, 1].sum())}


# The driver of each kind of center server (training/center/server.py).
SERVED = {ELASTIC: Served, DOWNPOUR: Served, BACKUP: Backup}


def choose(trainer: Trainer) -> Collective:
    """The driver this run's optimizer needs, for the whole run."""
    opt = trainer.optimizer
    if not opt.served:
        return Collective(trainer)
    kind, _ = opt.exchanger.server
    return SERVED[kind](trainer)


def restart_from_center(t: Trainer) -> None:
    """Every worker's weights, and the exchange's state that follows them, from the center; the
    inner optimizer's state starts again."""
    for x, c in zip(t.model.trainable_variables, t.optimizer.center):
        x.assign(c.value)
    t.optimizer.exchanger.restart(t.model.trainable_variables)
    reset_inner(t)


def reset_inner(t: Trainer) -> None:
    inner = t.optimizer.inner_optimizer
    for v in inner.variables:
        if v is not inner.iterations and "learning_rate" not in v.path:
            v.assign(t.tf.zeros_like(v.value))
