"""One worker's side of the asynchronous algorithms, driven between training steps.

The training step itself is the inner optimizer's alone (`ElasticAveragingOptimizer.apply` runs
no collective when asynchronous); around it, `before_step(t)` and `after_step(t)` talk to the
center server (training/center/server.py) on this worker's own clock, for the step with 0-based
index t:

- ``elastic`` (the paper's Algorithm 1, asynchronous EASGD and EAMSGD): on steps with
  t mod tau == 0 the worker reads the center c, computes e = alpha (x - c) from the x on which
  the elastic force acts (for Keras' Nesterov SGD, x = y - delta m: the same mapping as the
  synchronous form), writes e (c += e on the server) and applies x -= e itself.
- ``downpour`` (and ADOWNPOUR, MVADOWNPOUR, whose averages the server keeps): after every tau
  steps the worker pushes its accumulated update x - x_start and restarts from the center the
  server answers.

Two schedules. *Overlapped* (order ``simultaneous``): the read (or push) is sent and the worker
goes on with its next local steps; when the center arrives, after whichever step that is, the
force is computed from the worker's x at that moment and applied at once, and the write goes out
in the background (DOWNPOUR: the worker's x becomes the new center plus the local progress made
while the push travelled). A worker due to exchange while its previous exchange is still in
flight waits for it; the seconds it waits are `wait_seconds`. *Deterministic* (order
``round_robin``): the server serves the workers in rank order, one whole exchange at a time, and
each worker blocks; the force is computed from the x at which the step's gradient is taken and
applied after the inner step, which is Algorithm 1 exactly (the inner update of SGD, momentum and
Adam does not read x, so the order of the two subtractions does not matter).
"""

from __future__ import annotations

import time

import numpy as np

from training.center.client import CenterClient, CenterError
from training.center.protocol import Op
from training.center.server import BACKUP, DOWNPOUR, ELASTIC


class WorkerExchange:
    def __init__(
        self,
        client: CenterClient,
        variables: list,
        points,
        *,
        kind: str,
        tau: int,
        alpha: float,
        deterministic: bool,
    ):
        """`points()` gives the x on which the elastic force acts, one array per variable."""
        self.client, self.variables, self.points = client, variables, points
        self.kind, self.tau, self.alpha, self.deterministic = kind, tau, alpha, deterministic
        self.shapes = [tuple(v.shape) for v in variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.exchanges = 0
        self.wait_seconds = 0.0
        self._pending_pull: np.ndarray | None = None
        self._sent_x: np.ndarray | None = None
        self._base: np.ndarray | None = None
        self._base_version = 0
        self._wire = client.wire

    # -- flat views --------------------------------------------------------------------------

    @staticmethod
    def _flat(arrays) -> np.ndarray:
        return np.concatenate([np.asarray(a, dtype="f4").ravel() for a in arrays])

    def _x(self) -> np.ndarray:
        return self._flat(v.numpy() for v in self.variables)

    def _elastic_x(self) -> np.ndarray:
        return self._flat(p.numpy() for p in self.points())

    def _rounded(self, values: np.ndarray) -> np.ndarray:
        """What the server will receive: the worker applies the same, so that nothing is lost
        between them in a float16 exchange."""
        if self._wire == "<f4":
            return values
        return values.astype(self._wire).astype("f4")

    def _add(self, flat: np.ndarray, sign: float = 1.0) -> None:
        offset = 0
        for v, shape, size in zip(self.variables, self.shapes, self.sizes):
            part = flat[offset : offset + size].reshape(shape)
            v.assign_add(sign * part if sign != 1.0 else part)
            offset += size

    def _set(self, flat: np.ndarray) -> None:
        offset = 0
        for v, shape, size in zip(self.variables, self.shapes, self.sizes):
            v.assign(flat[offset : offset + size].reshape(shape))
            offset += size

    @property
    def _waited_us(self) -> int:
        return int(self.wait_seconds * 1e6)

    # -- the schedule ------------------------------------------------------------------------

    def begin(self, version: int) -> None:
        """Every worker starts from the center (version `version`)."""
        self._base, self._base_version = self._x(), version

    def before_step(self, t: int) -> None:
        if self.kind != ELASTIC or t % self.tau:
            return
        self._settle()
        if self.deterministic:
            read = self._blocking(Op.READ)
            e = self._rounded(self.alpha * (self._elastic_x() - read.values))
            self._blocking(Op.WRITE, a=read.a, b=self._waited_us, payload=e)
            self.exchanges += 1
            self._pending_pull = e
            return
        self.client.send(Op.READ)

    def after_step(self, t: int) -> None:
        if self._pending_pull is not None:
            self._add(self._pending_pull, -1.0)
            self._pending_pull = None
        if not self.deterministic and self.client.in_flight:
            reply = self.client.poll()
            if reply is not None:
                self._arrived(reply)
        if self.kind == DOWNPOUR and (t + 1) % self.tau == 0:
            self._settle()
            if self._base is None:
                self._base = self._x()
            x = self._x()
            update = self._rounded(x - self._base)
            if self.deterministic:
                reply = self._blocking(
                    Op.PUSH, a=self._base_version, b=self._waited_us, payload=update
                )
                self._set(reply.values)
                self._restarted(reply)
                return
            self._sent_x = x
            self.client.send(Op.PUSH, a=self._base_version, b=self._waited_us, payload=update)

    def finish(self) -> None:
        """Complete what is in flight, so that nothing this worker learned is lost."""
        self._settle()

    def gradient(self, flat: np.ndarray, step: int) -> tuple[np.ndarray, int]:
        """Backup workers: this step's gradient in; the means of the steps from `step` to the
        steps done now (one row when on time) out, and the number of steps done."""
        reply = self._blocking(Op.GRADIENT, a=step, b=self._waited_us, payload=flat)
        self.exchanges += 1
        return reply.values.reshape(-1, sum(self.sizes)), reply.a

    # -- answers -----------------------------------------------------------------------------

    def _blocking(self, op: Op, a: int = 0, b: int = 0, payload=b""):
        self.client.send(op, a, b, payload)
        return self._wait()

    def _wait(self):
        t0 = time.perf_counter()
        reply = self.client.wait()
        self.wait_seconds += time.perf_counter() - t0
        return reply

    def _settle(self) -> None:
        """Wait for the exchange in flight, and for the write a read leads to."""
        while self.client.in_flight:
            self._arrived(self._wait())

    def _arrived(self, reply) -> None:
        if self.client.last_op == Op.READ:
            e = self._rounded(self.alpha * (self._elastic_x() - reply.values))
            self._add(e, -1.0)
            self.client.send(Op.WRITE, a=reply.a, b=self._waited_us, payload=e)
        elif self.client.last_op == Op.WRITE:
            self.exchanges += 1
        elif self.client.last_op == Op.PUSH:
            x = self._x()
            self._set(reply.values + (x - self._sent_x))
            self._sent_x = None
            self._restarted(reply)

    def _restarted(self, reply) -> None:
        self._base = np.array(reply.values, dtype="f4")
        self._base_version = reply.a
        self.exchanges += 1


class AsynchronousCenter:
    """The asynchronous machinery of one rank: rank 0 holds the server (and a second connection
    of its own to read the center for evaluation and checkpoints); every rank a worker.

    `start` is collective: Horovod broadcasts the server's address, a per-job random token and
    the center's version from rank 0."""

    def __init__(self, optimizer, mode: str = "thread"):
        self.opt, self.mode = optimizer, mode
        # The exchange's form on the server, and what the server and the workers take from it.
        self.kind, self.average = optimizer.exchanger.server
        self.options = optimizer.exchanger.server_options()
        self.server = None
        self.control: CenterClient | None = None
        self.worker: WorkerExchange | None = None

    def start(self) -> None:
        import secrets

        from training.center.server import CenterServer, CenterState
        from training.exchanges import collectives
        from training.exchanges.base import force_points

        opt, rank = self.opt, collectives.rank()
        answer: tuple | str = ""
        if rank == 0:
            flat = WorkerExchange._flat
            try:
                if self.kind == BACKUP:  # the server counts steps; it keeps no center
                    steps = int(opt.iterations.numpy())
                    state = CenterState(
                        flat(v.numpy() for v in opt._trainable_variables), None, steps
                    )
                else:
                    state = CenterState(
                        flat(c.numpy() for c in opt.center),
                        flat(z.numpy() for z in opt.average) if opt.average else None,
                        int(opt.center_version.numpy()),
                        int(opt.center_updates.numpy()),
                    )
                token = secrets.token_bytes(16)
                self.server = CenterServer(
                    self.kind,
                    state,
                    workers=collectives.size(),
                    token=token,
                    average=self.average,
                    precision=opt.wire_precision,
                    host=collectives.center_host(),
                    **self.options,
                )
                answer = (self.server.start(self.mode), token, state.version)
            except (OSError, RuntimeError, ValueError) as exc:
                answer = f"the center server did not start on rank 0: {exc}"
        answer = collectives.broadcast_object(answer, 0)
        if isinstance(answer, str):
            raise RuntimeError(answer)
        address, token, version = answer
        variables = list(opt._trainable_variables)
        self.worker = WorkerExchange(
            CenterClient(address, token, rank, precision=opt.wire_precision),
            variables,
            lambda: force_points(opt.inner_optimizer, variables),
            kind=self.kind,
            tau=opt.tau,
            alpha=self.options.get("alpha", 0.0),
            deterministic=self.options.get("deterministic", False),
        )
        self.worker.begin(version)
        if rank == 0:
            self.control = CenterClient(address, token, 0)

    def snapshot(self) -> float:
        """Rank 0: the server's center (and average, version, updates) into the optimizer's
        variables; returns the workers' spread as the server last saw it."""
        opt = self.opt
        if self.kind == BACKUP:
            return 0.0
        reply = self.control.call(Op.SNAPSHOT)
        n = sum(self.worker.sizes)
        offset = 0
        for c, z, shape, size in zip(
            opt.center,
            opt.average or [None] * len(opt.center),
            self.worker.shapes,
            self.worker.sizes,
        ):
            c.assign(reply.values[offset : offset + size].reshape(shape))
            if z is not None:
                z.assign(reply.values[n + offset : n + offset + size].reshape(shape))
            offset += size
        opt.center_version.assign(reply.a)
        opt.center_updates.assign(reply.b)
        return float(reply.values[-1])

    def status(self) -> tuple[int, np.ndarray]:
        """Rank 0: workers done, and per rank (exchanges, staleness sum, max, seconds waited)."""
        reply = self.control.call(Op.STATUS)
        return reply.a, reply.values.reshape(-1, 4)

    def finish(self, poll_seconds: float = 0.05) -> None:
        """Every rank after its last step; rank 0 returns once every worker is done, or fails
        when one has been silent for the client's timeout (it died without a word)."""
        self.worker.finish()
        self.worker.client.call(Op.DONE)
        if self.control is None:
            return
        done, stats = self.status()
        heard, last = time.monotonic(), stats[:, 0].sum()
        while done < self.server.workers:
            time.sleep(poll_seconds)
            done, stats = self.status()
            if stats[:, 0].sum() != last:
                heard, last = time.monotonic(), stats[:, 0].sum()
            if time.monotonic() - heard > self.control.timeout:
                raise CenterError(
                    f"{self.server.workers - done} worker(s) neither finished nor exchanged for "
                    f"{self.control.timeout:g} s (EASGD_CENTER_TIMEOUT); they may have died"
                )

    def abort(self, reason: str) -> None:
        """Tell every worker (at its next exchange) that this one gave up, and why."""
        if self.worker is None:
            return
        c = self.worker.client
        side = CenterClient(c.address, c.token, c.rank, timeout=5.0)
        try:
            side.call(Op.ABORT, payload=reason.encode("utf-8"))
        except Exception:  # noqa: BLE001 - the reason is also raised on this rank
            pass
        finally:
            side.close()

    def stop(self) -> None:
        for client in (self.worker.client if self.worker else None, self.control):
            if client is not None:
                client.close()
        if self.server is not None:
            self.server.stop()
