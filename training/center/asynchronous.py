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

from training.center.client import CenterClient, CenterError, ShardedClient, shard_bounds
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

    # -- flat views --------------------------------------------------------------------------

    @staticmethod
    def _flat(arrays) -> np.ndarray:
        return np.concatenate([np.asarray(a, dtype="f4").ravel() for a in arrays])

    def _x(self) -> np.ndarray:
        return self._flat(v.numpy() for v in self.variables)

    def _elastic_x(self) -> np.ndarray:
        return self._flat(p.numpy() for p in self.points())

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

    def begin(self, version: int, center: np.ndarray | None = None) -> None:
        """Every worker starts from the center (version `version`); compressed answers are
        differences from `center`, the servers' (default: this worker's x)."""
        self._base, self._base_version = self._x(), version
        self.client.start(self._base if center is None else center)

    def before_step(self, t: int) -> None:
        if self.kind != ELASTIC or t % self.tau:
            return
        self._settle()
        if self.deterministic:
            read = self._blocking(Op.READ)
            e = self.alpha * (self._elastic_x() - read.values)
            self._blocking(Op.WRITE, a=read.a, b=self._waited_us, payload=e)
            self.exchanges += 1
            # What the server added (rounded, or decoded): nothing is lost between them.
            self._pending_pull = self.client.applied
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
            update = x - self._base
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
            e = self.alpha * (self._elastic_x() - reply.values)
            self.client.send(Op.WRITE, a=reply.a, b=self._waited_us, payload=e)
            self._add(self.client.applied, -1.0)
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
        self.shards = optimizer.exchanger.center_shards
        self.server = None
        self.control: ShardedClient | None = None
        self.worker: WorkerExchange | None = None

    def start(self) -> None:
        """Ranks 0 .. shards - 1 each start the server of one contiguous part of the center
        (`optimizer.center_shards`; one server on rank 0 by default); every rank connects to
        all of them."""
        import secrets

        from training.exchanges import collectives
        from training.exchanges.base import force_points

        opt, rank, size = self.opt, collectives.rank(), collectives.size()
        shards = self.shards
        if shards > size:
            raise RuntimeError(
                f"optimizer.center_shards: {shards} shards need as many ranks, this job has "
                f"{size}; choose 1 to {size}"
            )
        # Rank 0's state, which every shard's server starts from (only rank 0 keeps the center
        # up to date between starts: a second `fit`, a loaded model).
        state = collectives.broadcast_object(
            self._state(secrets.token_bytes(16)) if rank == 0 else None, 0
        )
        token, version = state.pop("token"), state["version"]
        variables = list(opt._trainable_variables)
        n = sum(int(np.prod(v.shape)) for v in variables)
        bounds = shard_bounds(n, shards)
        answer = self._serve(bounds[rank], token, state) if rank < shards else ""
        answers = collectives.allgather_object(answer)
        problems = [a for a in answers[:shards] if a.startswith("!")]
        if problems:
            raise RuntimeError("; ".join(p[1:] for p in problems))
        addresses = answers[:shards]
        self.worker = WorkerExchange(
            ShardedClient(addresses, bounds, token, rank, precision=opt.wire_precision),
            variables,
            lambda: force_points(opt.inner_optimizer, variables),
            kind=self.kind,
            tau=opt.tau,
            alpha=self.options.get("alpha", 0.0),
            deterministic=self.options.get("deterministic", False),
        )
        self.worker.begin(version, state.get("center"))
        if rank == 0:
            self.control = ShardedClient(addresses, bounds, token, 0)

    def _state(self, token: bytes) -> dict:
        """Rank 0's: the token, and the center, average and counters (the backup server counts
        steps and keeps no center)."""
        opt, flat = self.opt, WorkerExchange._flat
        if self.kind == BACKUP:
            weights = flat(v.numpy() for v in opt._trainable_variables)
            return {"token": token, "version": int(opt.iterations.numpy()), "weights": weights}
        return {
            "token": token,
            "version": int(opt.center_version.numpy()),
            "updates": int(opt.center_updates.numpy()),
            "center": flat(c.numpy() for c in opt.center),
            "average": flat(z.numpy() for z in opt.average) if opt.average else None,
        }

    def _serve(self, bounds: tuple[int, int], token: bytes, state: dict) -> str:
        """This rank's server, for the values `bounds` of rank 0's flat center: its address,
        or "!" and why it did not start."""
        from training.center.server import CenterServer, CenterState
        from training.exchanges import collectives

        lo, hi = bounds
        try:
            if self.kind == BACKUP:
                start = CenterState(state["weights"], None, state["version"])
            else:
                average = state["average"]
                start = CenterState(
                    state["center"][lo:hi],
                    None if average is None else average[lo:hi],
                    state["version"],
                    state["updates"],
                )
            self.server = CenterServer(
                self.kind,
                start,
                workers=collectives.size(),
                token=token,
                average=self.average,
                precision=self.opt.wire_precision,
                host=collectives.center_host(),
                **self.options,
            )
            return self.server.start(self.mode)
        except (OSError, RuntimeError, ValueError) as exc:
            return f"!the center server did not start on rank {collectives.rank()}: {exc}"

    def snapshot(self) -> float:
        """Rank 0: the servers' center (and average, version, updates) into the optimizer's
        variables; returns the workers' spread as the servers last saw it."""
        opt = self.opt
        if self.kind == BACKUP:
            return 0.0
        replies = self.control.each(Op.SNAPSHOT)
        parts = [r.values[:-1].reshape(2 if opt.average else 1, -1) for r in replies]
        center = np.concatenate([p[0] for p in parts])
        average = np.concatenate([p[1] for p in parts]) if opt.average else None
        offset = 0
        for c, z, shape, size in zip(
            opt.center,
            opt.average or [None] * len(opt.center),
            self.worker.shapes,
            self.worker.sizes,
        ):
            c.assign(center[offset : offset + size].reshape(shape))
            if z is not None:
                z.assign(average[offset : offset + size].reshape(shape))
            offset += size
        opt.center_version.assign(replies[0].a)
        opt.center_updates.assign(replies[0].b)
        return float(sum(r.values[-1] for r in replies))

    def status(self) -> tuple[int, np.ndarray]:
        """Rank 0: workers done, and per rank (exchanges, staleness sum, max, seconds waited):
        an exchange counts once every shard took it; the worst shard's staleness and wait."""
        replies = self.control.each(Op.STATUS)
        stats = [r.values.reshape(-1, 4) for r in replies]
        joined = np.maximum.reduce(stats)
        joined[:, 0] = np.minimum.reduce([s[:, 0] for s in stats])
        return min(r.a for r in replies), joined

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
        for c in self.worker.client.clients:
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
