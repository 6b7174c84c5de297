"""Overlapped rounds: a synchronous round's collective runs behind the steps that follow it.

torchft's `fragment_sync_delay` and Streaming DiLoCo start a round's all-reduce and wait for it
steps later. Horovod's graph ops block the training step that holds them, so the collective
leaves the step: at the step that starts a round, every rank posts its message in the graph (an
exchange's values; with compression, the codes, its residual updated there), then, after that
step, a thread runs the collective in a function of its own while the next `overlap_steps`
steps train; before the step `overlap_steps` later, the thread is joined and the exchange
lands the sum (`Exchange.land`). Every rank lands on the same step, so replicas stay identical.

A round in flight lands early, on every rank alike, at a checkpoint (nothing in flight is lost
or saved half-done) and after the last step. Horovod runs collectives one at a time, so any
other collective waits for the round in flight: the loop's agreement on checkpoints waits for a
step with none in flight, and an evaluation inside a flight waits for the collective (and sees
the center before the round lands).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from training.exchanges.base import Flat, collectives, tf, total


class Flight:
    """One exchange's message in flight: the posted message, the sum that comes back, and the
    thread that carries it."""

    def __init__(self, exchange: Any, opt: Any, var_list: list, steps: int):
        self.exchange, self.opt, self.steps = exchange, opt, steps
        self.layout = Flat(var_list)
        size = self.layout.size
        compressed = exchange.compressed
        with tf.init_scope():
            if compressed is not None:
                self.outbox = tf.Variable(tf.zeros([compressed.codec.bytes], tf.uint8), False)
            else:
                self.outbox = tf.Variable(tf.zeros([size], tf.float32), False)
            self.inbox = tf.Variable(tf.zeros([size], tf.float32), False)
            self.sent = tf.Variable(tf.zeros([size], tf.float32), False)
            self.in_air = tf.Variable(0, trainable=False, dtype=tf.int32)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.lands_at: int | None = None
        self.waited = 0.0
        self.carried: tuple[int, float] = (0, 0.0)  # the last collective's bytes and seconds
        self._nbytes = 0
        self._fly = tf.function(self._collective)
        self._land = tf.function(self._landing)

    def post(self, opt: Any, values: list) -> list:
        """In the step's graph: this rank's message posted; returns it as the others will
        apply it (decoded, when compressed), shaped like `values`."""
        check = tf.debugging.assert_equal(
            self.in_air,
            0,
            message=(
                "optimizer.overlap_steps: a round started while the last one was still in "
                "flight: nothing carried it. Under model.fit add OverlapCallback(optimizer) "
                "to callbacks=[...]; in a loop of your own call "
                "optimizer.before_step(t) and after_step(t) around each step"
            ),
        )
        with tf.control_dependencies([check]):
            flat = self.layout.flat(values)
            compressed = self.exchange.compressed
            if compressed is not None:
                own, data = compressed.pack(opt, values)
                self.outbox.assign(data)
            else:
                own = flat
                self.outbox.assign(own)
            self.sent.assign(flat)  # exact: what the worker was when it sent
            self.in_air.assign(1)
        return self.layout.shaped(own, [v.dtype for v in values])

    def _collective(self) -> None:
        compressed, name = self.exchange.compressed, f"easgd_{self.exchange.name}_overlap"
        if compressed is None:
            (summed,), nbytes, seconds = collectives.timed_sum([self.outbox.read_value()], name)
        else:
            (gathered,), nbytes, seconds = collectives.timed_gather(
                [self.outbox.read_value()], name
            )
            rows = compressed.decode_rows(gathered, range(collectives.size()))
            (summed,) = total([[row] for row in rows])
        self.inbox.assign(summed)
        self._nbytes = nbytes  # a Python int, known when the function is traced
        return seconds

    def _landing(self, nbytes: int, seconds: Any) -> None:
        variables = self.opt._trainable_variables
        dtypes = [v.dtype for v in variables]
        summed = self.layout.shaped(self.inbox.read_value(), dtypes)
        sent = self.layout.shaped(self.sent.read_value(), dtypes)
        self.exchange.land(self.opt, variables, summed, sent)
        self.in_air.assign(0)
        # Counted here, on the training thread, when the round lands: every row says the same.
        self.opt.record(nbytes, seconds)

    # -- around the steps, in Python ---------------------------------------------------------

    def after_step(self, t: int) -> None:
        """After the step with 0-based index t: the collective of the round it posted leaves."""
        if self.thread is not None or not bool(self.in_air.numpy()):
            return
        self.error, self.lands_at = None, t + 1 + self.steps
        self.thread = threading.Thread(target=self._carry, name="easgd-overlap", daemon=True)
        self.thread.start()

    def _carry(self) -> None:
        try:
            seconds = float(self._fly().numpy())
            self.carried = (self._nbytes, seconds)
        except Exception as exc:  # noqa: BLE001 (raised in the training thread, at the landing)
            self.error = exc

    @property
    def busy(self) -> bool:
        """Whether a round is in flight (the same on every rank after the same step): any other
        collective would wait behind it."""
        return self.thread is not None

    def before_step(self, t: int) -> None:
        """Before the step with 0-based index t: a round due to land by now lands."""
        if self.lands_at is not None and t >= self.lands_at:
            self.land()

    def land(self) -> None:
        """The round in flight, if any, lands now (every rank calls it on the same step)."""
        if self.thread is None:
            return
        t0 = time.perf_counter()
        self.thread.join()
        self.waited += time.perf_counter() - t0
        self.thread, self.lands_at = None, None
        if self.error is not None:
            raise RuntimeError(
                f"the overlapped round's collective failed: {self.error}"
            ) from self.error
        nbytes, seconds = self.carried
        self._land(nbytes, tf.constant(seconds, tf.float64))

    def stop(self, timeout: float = 60.0) -> None:
        """Whatever happened: a collective every rank handed in ends; wait for it a while, so
        no thread of ours runs TensorFlow while the process shuts down."""
        if self.thread is not None:
            self.thread.join(timeout)
