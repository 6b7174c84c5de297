"""The center of asynchronous EASGD and DOWNPOUR, held by rank 0 of a job.

Horovod's collectives are synchronous and it has no one-sided operations, so the master of the
paper's asynchronous algorithms is this small pyzmq server. It keeps the center (and the
DOWNPOUR family's averages), counts its versions and answers one worker at a time, so every
update of the center is atomic:

- ``elastic`` (Algorithm 1): a worker READs the center, computes e = alpha (x_i - center), WRITEs
  e (center += e) and applies x_i -= e itself. Staleness is the number of other workers' writes
  between its read and its write.
- ``downpour``: a worker PUSHes its accumulated update (center += update) and gets the new center
  back; ``time`` and ``moving`` averages (ADOWNPOUR, MVADOWNPOUR) are taken at each push. Its
  staleness is the number of pushes between the center it started from and its push.
- ``backup`` (synchronous SGD with backup workers, Chen et al. 2016): each worker sends the
  gradient of the step it is at; the mean of the first N = workers - backup to arrive completes
  the step and answers them all. A gradient for a step already completed is dropped, and its
  worker gets the means of every step it missed, which it applies in order with its own inner
  optimizer: every worker's weights and optimizer state stay those of the same mean sequence.

With ``deterministic`` the workers take turns in rank order (a READ waits for its turn, which
ends with the WRITE): the fixed interleaving the reference test transcribes. It listens on one
address only (loopback, or the job's host interface when the job spans hosts), and refuses a
request without the job's token, of the wrong shape, or from a rank outside the job.

This module imports neither TensorFlow nor Horovod, so the server can run in a thread of rank 0
or in a child process of its own (`start(mode=...)`).
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass

import numpy as np
import zmq

from training.center import codes
from training.center.protocol import (
    HEADER,
    PRECISIONS,
    TOKEN_BYTES,
    WIRE_FORMS,
    WIRE_OPS,
    Message,
    Op,
    ProtocolError,
    Status,
    decode,
    encode,
    error_frames,
)

KINDS = ("elastic", "downpour", "backup")
ELASTIC, DOWNPOUR, BACKUP = KINDS
# Means kept for late workers: enough steps for a worker several times slower than the rest.
BACKUP_LOG_BYTES = 256 * 2**20
BACKUP_LOG_MIN = 8
AVERAGES = (None, "time", "moving")
POLL_MS = 50


@dataclass
class CenterState:
    """What a checkpoint keeps of the server, and what it starts from."""

    center: np.ndarray
    average: np.ndarray | None = None
    version: int = 0
    updates: int = 0


class CenterServer:
    """The master. Build it, `start()` it on rank 0, hand the address and token to the workers
    (Horovod broadcasts them), `stop()` it when every worker is done."""

    def __init__(
        self,
        kind: str,
        state: CenterState,
        *,
        workers: int,
        token: bytes,
        alpha: float = 0.0,
        average: str | None = None,
        average_rate: float = 0.001,
        deterministic: bool = False,
        backup_workers: int = 0,
        precision: str = "float32",
        host: str = "127.0.0.1",
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}. Received: {kind!r}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}. Received: {average!r}")
        if len(token) != TOKEN_BYTES:
            raise ValueError(f"token must be {TOKEN_BYTES} bytes. Received: {len(token)}")
        self.kind, self.workers, self.token, self.host = kind, workers, token, host
        self.alpha, self.average_kind, self.average_rate = alpha, average, average_rate
        self.deterministic = deterministic
        if not 0 <= backup_workers < workers:
            raise ValueError(
                f"optimizer.backup_workers: {backup_workers} leaves no worker whose gradient "
                f"counts among {workers}; choose 0 to {workers - 1} (received: {backup_workers})"
            )
        self.backup_workers = backup_workers
        if precision not in WIRE_FORMS:
            raise ValueError(f"precision must be one of {WIRE_FORMS}. Received: {precision!r}")
        if precision in codes.LEVELS and kind == BACKUP:
            raise ValueError(
                f"the backup workers' server sends means every worker applies alike: "
                f"float32 or float16, not {precision} codes"
            )
        self.precision = precision
        self.wire = PRECISIONS.get(precision)
        self.center = np.array(state.center, dtype="<f4").ravel()
        self.n = self.center.size
        # Compressed: per worker, the center as that worker holds it (its answers are
        # differences from it); every worker starts from the center this server starts with.
        self.coded = precision != "float32"
        self.replicas: dict[int, np.ndarray] = {}
        self._start = self.center.copy() if self.coded else None
        self.average = None
        if average is not None:
            source = state.average if state.average is not None else self.center
            self.average = np.array(source, dtype="<f4").ravel()
        self.version, self.updates = state.version, state.updates
        self.done: set[int] = set()
        self.aborted: str | None = None
        self.distance: dict[int, float] = {}
        # Per rank: exchanges, sum and max of staleness, seconds waited (as the worker reports).
        self.stats = np.zeros((workers, 4), dtype="<f4")
        self.holder = 0
        # backup: the next step's gradients so far, and the latest steps' means
        self.step_sum = np.zeros(self.n, dtype="<f4") if kind == BACKUP else None
        self.step_waiting: list[tuple[bytes, int]] = []
        self.means: dict[int, np.ndarray] = {}
        self.log_steps = max(BACKUP_LOG_MIN, BACKUP_LOG_BYTES // max(4 * self.n, 1))
        self.pending: dict[int, tuple[bytes, Message]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = None
        self.address: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, mode: str = "thread") -> str:
        """Bind, serve in the background, and return the address workers connect to."""
        if mode == "thread":
            ready: list = []
            started = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(ready, started), name="easgd-center", daemon=True
            )
            self._thread.start()
            started.wait(30)
            if not ready or isinstance(ready[0], BaseException):
                raise RuntimeError(f"the center server did not start: {ready[0] if ready else ''}")
            self.address = ready[0]
        elif mode == "process":
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            self._process = ctx.Process(
                target=_serve_in_process, args=(self, child), name="easgd-center", daemon=True
            )
            self._process.start()
            if not parent.poll(60):
                raise RuntimeError("the center server process did not start within 60 s")
            answer = parent.recv()
            if isinstance(answer, BaseException):
                raise RuntimeError(f"the center server did not start: {answer}")
            self.address = answer
        else:
            raise ValueError(f"mode must be 'thread' or 'process'. Received: {mode!r}")
        return self.address

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_stop=None, _thread=None, _process=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._stop = threading.Event()

    def _run(self, ready: list, started: threading.Event | None = None) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            # A frame larger than the center and its average is not ours: zmq drops the peer.
            sock.setsockopt(zmq.MAXMSGSIZE, 8 * self.n + HEADER.size + 4096)
            port = sock.bind_to_random_port(f"tcp://{self.host}")
            ready.append(f"tcp://{self.host}:{port}")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            ready.append(exc)
            sock.close(0)
            ctx.term()
            return
        finally:
            if started is not None:
                started.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(POLL_MS):
                    continue
                frames = sock.recv_multipart(copy=True)
                for reply in self.handle(frames):
                    sock.send_multipart(reply, copy=False)
        finally:
            sock.close(0)
            ctx.term()

    # -- requests ----------------------------------------------------------------------------

    def handle(self, frames: list) -> list[list]:
        """Replies (identity first) to one request: none while it waits for its turn, several
        when it ends a turn another request waited for."""
        identity, body = frames[0], frames[1:]
        try:
            return self._handle(identity, body)
        except Exception as exc:  # noqa: BLE001 - the server answers; it never dies of a request
            return [[identity, *error_frames(Status.ERROR, f"the center failed: {exc!r:.300}")]]

    def _handle(self, identity: bytes, body: list) -> list[list]:
        try:
            m = decode(body)
        except ProtocolError as exc:
            return [[identity, *error_frames(Status.ERROR, str(exc))]]
        problem = self._refusal(m)
        if problem:
            return [[identity, *error_frames(Status.ERROR, problem)]]
        if self.aborted is not None and m.op not in (Op.SNAPSHOT, Op.STATUS, Op.DONE):
            return [[identity, *error_frames(Status.ABORTED, self.aborted)]]
        if self.deterministic and m.op in (Op.READ, Op.PUSH) and m.rank != self.holder:
            self.pending[m.rank] = (identity, m)
            return []
        if m.op == Op.GRADIENT:
            return self._gradient(identity, m)
        replies = [[identity, *self._answer(m)]]
        if m.op == Op.ABORT:  # the workers waiting for a turn or a step hear it now
            waiting = [who for who, _ in self.pending.values()]
            waiting += [who for who, _ in self.step_waiting]
            self.pending, self.step_waiting = {}, []
            replies += [[who, *error_frames(Status.ABORTED, self.aborted)] for who in waiting]
        if m.op in (Op.WRITE, Op.PUSH, Op.DONE) and self.deterministic:
            replies += self._serve_waiting()
        return replies

    def _refusal(self, m: Message) -> str | None:
        if m.token != self.token:
            return "wrong token: this request is not from this job's workers; nothing changed"
        if m.op not in Op.__members__.values():
            return f"unknown operation {m.op}"
        if not 0 <= m.rank < self.workers:
            return f"rank {m.rank} is not one of the job's {self.workers} workers"
        expected = {
            Op.WRITE: self.n,
            Op.PUSH: self.n,
            Op.GRADIENT: self.n,
            Op.LOAD: self.n * (2 if self.average is not None else 1),
        }.get(Op(m.op))
        form = self.precision if m.op in WIRE_OPS else "float32"
        if expected is not None and len(m.payload) != codes.wire_bytes(expected, form):
            return (
                f"wrong shape: {Op(m.op).name} takes {expected} values as {form} "
                f"({codes.wire_bytes(expected, form)} bytes), received {len(m.payload)} bytes; "
                "nothing changed"
            )
        kinds = {
            Op.READ: (ELASTIC,),
            Op.WRITE: (ELASTIC,),
            Op.PUSH: (DOWNPOUR,),
            Op.GRADIENT: (BACKUP,),
        }.get(Op(m.op))
        if kinds is not None and self.kind not in kinds:
            return f"{Op(m.op).name} is not an operation of the {self.kind} center"
        if m.op == Op.LOAD and m.rank != 0:
            return f"only rank 0 loads a checkpoint's center (received from rank {m.rank})"
        if self.deterministic and m.op == Op.WRITE and m.rank != self.holder:
            return f"rank {m.rank} wrote out of its turn (rank {self.holder}'s)"
        return None

    def _answer(self, m: Message) -> list:
        op = Op(m.op)
        if op == Op.READ:
            return encode(
                Status.OK, m.rank, bytes(TOKEN_BYTES), self.version, 0, self._center_for(m.rank)
            )
        if op == Op.WRITE:
            staleness = self.version - m.a
            e = self._incoming(m)
            self.center += e
            self.version += 1
            self.updates += 1
            if self.alpha:
                self.distance[m.rank] = float(np.dot(e, e)) / self.alpha**2
            self._count(m, staleness)
            self._advance()
            return encode(Status.OK, m.rank, bytes(TOKEN_BYTES), self.version, staleness)
        if op == Op.PUSH:
            staleness = self.version - m.a
            self.center += self._incoming(m)
            self.version += 1
            self.updates += 1
            self._take_average()
            self._count(m, staleness)
            self._advance()
            return encode(
                Status.OK,
                m.rank,
                bytes(TOKEN_BYTES),
                self.version,
                staleness,
                self._center_for(m.rank),
            )
        if op == Op.SNAPSHOT:
            spread = np.array([sum(self.distance.values())], dtype="<f4")
            parts = [self.center] + ([self.average] if self.average is not None else []) + [spread]
            return encode(
                Status.OK,
                m.rank,
                bytes(TOKEN_BYTES),
                self.version,
                self.updates,
                np.concatenate(parts),
            )
        if op == Op.LOAD:
            values = m.values()
            self.center = values[: self.n].copy()
            if self.average is not None:
                self.average = values[self.n :].copy()
            self.version, self.updates = m.a, m.b
            return encode(Status.OK, m.rank, bytes(TOKEN_BYTES), self.version, self.updates)
        if op == Op.DONE:
            self.done.add(m.rank)
            if self.holder == m.rank:
                self._advance()
            return encode(Status.OK, m.rank, bytes(TOKEN_BYTES), len(self.done), self.workers)
        if op == Op.ABORT:
            self.aborted = self.aborted or f"rank {m.rank}: {m.text()}"
            return encode(Status.OK, m.rank, bytes(TOKEN_BYTES))
        # STATUS
        if self.aborted is not None:
            return error_frames(Status.ABORTED, self.aborted)
        return encode(
            Status.OK, m.rank, bytes(TOKEN_BYTES), len(self.done), self.workers, self.stats.ravel()
        )

    def _count(self, m: Message, staleness: int) -> None:
        """The exchange's staleness; `b` of a WRITE or PUSH is the microseconds its worker has
        waited for the center so far."""
        row = self.stats[m.rank]
        row[0] += 1
        row[1] += staleness
        row[2] = max(row[2], staleness)
        row[3] = max(m.b, 0) / 1e6

    def _incoming(self, m: Message) -> np.ndarray:
        """A worker's e, update or gradient as float32, decoded from the job's wire form."""
        if self.coded:
            return codes.decode(m.payload, self.n, self.precision)
        return m.values(self.wire)

    def _center_for(self, rank: int):
        """The center as it goes to worker `rank`: float32, or, compressed, its difference from
        that worker's replica, whose replica moves by what the message decodes to (the worker's
        does the same), so what rounding leaves out goes with the next answer."""
        if not self.coded:
            return self._wire(self.center)
        replica = self.replicas.get(rank, self._start)
        data = codes.encode(self.center - replica, self.precision)
        self.replicas[rank] = replica + codes.decode(data, self.n, self.precision)
        return data

    def _wire(self, values: np.ndarray) -> np.ndarray:
        """A copy in the wire precision: zmq sends later, and a turn served next may change the
        center first."""
        return values.astype(self.wire, copy=True)

    def _take_average(self) -> None:
        if self.average_kind == "time":
            # z is the mean of the centers c_0 .. c_k after the k-th update.
            self.average += (self.center - self.average) / (self.updates + 1)
        elif self.average_kind == "moving":
            a = self.average_rate
            self.average *= 1 - a
            self.average += a * self.center

    def _advance(self) -> None:
        """The next rank in rank order that is not done takes the turn."""
        if not self.deterministic:
            return
        active = [r for r in range(self.workers) if r not in self.done]
        if not active:
            return
        later = [r for r in active if r > self.holder]
        self.holder = later[0] if later else active[0]

    def _serve_waiting(self) -> list[list]:
        replies = []
        while self.holder in self.pending:
            identity, m = self.pending.pop(self.holder)
            replies.append([identity, *self._answer(m)])
            if m.op != Op.PUSH:  # a READ holds the turn until its WRITE
                break
        return replies

    def _gradient(self, identity: bytes, m: Message) -> list[list]:
        """Step m.a's gradient (`version` is the number of steps completed, so the step being
        gathered is the one with index `version`)."""
        step, done = m.a, self.version
        row = self.stats[m.rank]
        row[0] += 1
        row[3] = max(m.b, 0) / 1e6
        if step > done:
            return [
                [
                    identity,
                    *error_frames(
                        Status.ERROR,
                        f"rank {m.rank} sent a gradient for step {step}, but step {done} is the "
                        "one being gathered",
                    ),
                ]
            ]
        if step < done:
            if step not in self.means:
                return [
                    [
                        identity,
                        *error_frames(
                            Status.ERROR,
                            f"rank {m.rank} is {done - step} steps behind, more than the "
                            f"{self.log_steps} steps' means kept for late workers",
                        ),
                    ]
                ]
            row[1] += 1
            row[2] = max(row[2], done - step)
            missed = self._wire(np.concatenate([self.means[k] for k in range(step, done)]))
            return [
                [
                    identity,
                    *encode(Status.OK, m.rank, bytes(TOKEN_BYTES), done, done - step, missed),
                ]
            ]
        self.step_sum += self._incoming(m)
        self.step_waiting.append((identity, m.rank))
        if len(self.step_waiting) < self.workers - self.backup_workers:
            return []
        mean = self.step_sum / (self.workers - self.backup_workers)
        self.means[done] = mean
        self.means.pop(done - self.log_steps, None)
        self.version = self.updates = done + 1
        self.step_sum = np.zeros(self.n, dtype="<f4")
        waiting, self.step_waiting = self.step_waiting, []
        return [
            [who, *encode(Status.OK, rank, bytes(TOKEN_BYTES), done + 1, 0, self._wire(mean))]
            for who, rank in waiting
        ]


def _serve_in_process(server: CenterServer, conn) -> None:
    """A child process's whole life: serve until terminated, after reporting the address."""
    ready: list = []
    started = threading.Event()
    t = threading.Thread(target=server._run, args=(ready, started), daemon=True)
    t.start()
    started.wait(30)
    conn.send(ready[0] if ready else RuntimeError("no address"))
    t.join()
