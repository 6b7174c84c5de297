"""A worker's connection to the center server (training/center/server.py).

One request is in flight at a time. `send` returns at once (zmq's I/O thread moves the bytes while
the worker computes), `poll` picks up the answer if it has come, `wait` blocks for it: that is the
overlap of communication with local steps. A server that stays silent for `timeout` seconds is
taken for dead, with an error that says so instead of a hang.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import zmq

from training.center import codes
from training.center.protocol import PRECISIONS, WIRE_FORMS, WIRE_OPS, Op, Status, decode, encode

DEFAULT_TIMEOUT = 300.0


class CenterError(RuntimeError):
    """The center refused a request, or cannot be reached."""


class CenterAborted(CenterError):
    """Another worker aborted the job (its reason is the message)."""


@dataclass(frozen=True)
class Reply:
    a: int
    b: int
    values: np.ndarray  # float32, empty when the answer carries none
    seconds: float  # from the request's send to this answer


def timeout_from_env() -> float:
    text = os.environ.get("EASGD_CENTER_TIMEOUT", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return value if 0 < value < 1e6 else DEFAULT_TIMEOUT


class CenterClient:
    def __init__(
        self,
        address: str,
        token: bytes,
        rank: int,
        timeout: float | None = None,
        precision: str = "float32",
        size: int = 0,
    ):
        """`precision`: how model-sized payloads travel (`WIRE_FORMS`). Compressed (float16,
        int8, int4), what this worker sends carries error feedback, and the center comes as the
        difference from this worker's replica of it (`start` sets the replica; `size` is its
        length)."""
        if precision not in WIRE_FORMS:
            raise ValueError(f"precision must be one of {WIRE_FORMS}. Received: {precision!r}")
        self.address, self.token, self.rank = address, token, rank
        self.precision, self.size = precision, size
        self.wire = PRECISIONS.get(precision)
        coded = precision != "float32"
        self.up = codes.Sender(size, precision) if coded else None
        self.replica = np.zeros(size, dtype="<f4") if coded else None
        self.applied: np.ndarray | None = None  # what the server applies of the last payload
        self.timeout = timeout if timeout is not None else timeout_from_env()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(address)
        self._sent_at: float | None = None
        self._op: Op | None = None
        self.last_op: Op | None = None  # the request the latest answer was to
        self.bytes_sent = 0

    @property
    def in_flight(self) -> bool:
        return self._sent_at is not None

    def start(self, center: np.ndarray) -> None:
        """The center as this worker starts from it (coded: the replica the server's answers
        are differences from; the server's copy starts from the same center)."""
        if self.replica is not None:
            self.replica = np.array(center, dtype="<f4").ravel()

    def send(self, op: Op, a: int = 0, b: int = 0, payload=b"") -> None:
        if self.in_flight:
            raise CenterError(f"{op.name} sent while {self._op.name} still waits for its answer")
        if isinstance(payload, np.ndarray) and op in WIRE_OPS:
            if self.up is not None:
                payload = self.up.send(payload)
                self.applied = self.up.sent
            else:
                payload = payload.astype(self.wire, copy=False)
                self.applied = payload.astype("<f4", copy=False)
        frames = encode(op, self.rank, self.token, a, b, payload)
        self._sock.send_multipart(frames, copy=False)
        self.bytes_sent += len(frames[1]) if isinstance(frames[1], bytes) else frames[1].nbytes
        self._sent_at, self._op = time.perf_counter(), op

    def poll(self) -> Reply | None:
        """The answer, if it has arrived; None otherwise (never blocks)."""
        if not self.in_flight or not self._sock.poll(0):
            return None
        return self._receive()

    def wait(self) -> Reply:
        if not self.in_flight:
            raise CenterError("nothing to wait for: no request is in flight")
        if not self._sock.poll(int(self.timeout * 1000)):
            raise CenterError(
                f"the center server at {self.address} did not answer {self._op.name} within "
                f"{self.timeout:g} s; rank 0, which holds it, may have died (EASGD_CENTER_TIMEOUT "
                "sets the limit)"
            )
        return self._receive()

    def call(self, op: Op, a: int = 0, b: int = 0, payload=b"") -> Reply:
        self.send(op, a, b, payload)
        return self.wait()

    def _receive(self) -> Reply:
        frames = self._sock.recv_multipart(copy=True)
        seconds = time.perf_counter() - self._sent_at
        op = self.last_op = self._op
        self._sent_at = self._op = None
        m = decode(frames)
        if m.op == Status.ABORTED:
            raise CenterAborted(m.text())
        if m.op != Status.OK:
            raise CenterError(f"the center refused {op.name}: {m.text()}")
        return Reply(m.a, m.b, self._values(op, m), seconds)

    def _values(self, op: Op, m) -> np.ndarray:
        if op not in WIRE_OPS:
            return m.values("<f4")
        if self.up is None or op == Op.GRADIENT:  # backup workers' means: float32 or float16
            return m.values(self.wire)
        if not m.payload:
            return np.zeros(0, dtype="<f4")
        self.replica = self.replica + codes.decode(m.payload, self.size, self.precision)
        return self.replica.copy()

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """The contiguous parts of a center of `n` values held by `shards` servers: sizes differ by
    one at most, the larger first (as `numpy.array_split`)."""
    if not 1 <= shards <= n:
        raise ValueError(f"{shards} center shards cannot split {n} values; choose 1 to {n}")
    base, extra = divmod(n, shards)
    bounds, start = [], 0
    for j in range(shards):
        stop = start + base + (j < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


class ShardedClient:
    """One worker's connections to the servers of a sharded center: one request goes to every
    shard's server, each carrying that shard's part of the payload, and its answer is the
    shards' answers joined. `a` of an answer (a version) is one per shard, as a tuple, and a
    request's `a` may be such a tuple (or one number for every shard). With one shard it is
    one CenterClient with the same interface."""

    def __init__(
        self,
        addresses: list[str],
        bounds: list[tuple[int, int]],
        token: bytes,
        rank: int,
        timeout: float | None = None,
        precision: str = "float32",
    ):
        self.bounds = bounds
        self.clients = [
            CenterClient(a, token, rank, timeout, precision, hi - lo)
            for a, (lo, hi) in zip(addresses, bounds)
        ]
        self.timeout = self.clients[0].timeout
        self._replies: list[Reply | None] | None = None
        self._op: Op | None = None
        self.last_op: Op | None = None

    @property
    def bytes_sent(self) -> int:
        return sum(c.bytes_sent for c in self.clients)

    @property
    def applied(self) -> np.ndarray:
        """What the servers apply of the last payload, joined."""
        return _join([c.applied for c in self.clients])

    def start(self, center: np.ndarray) -> None:
        for c, (lo, hi) in zip(self.clients, self.bounds):
            c.start(center[lo:hi])

    @property
    def in_flight(self) -> bool:
        return self._replies is not None

    def send(self, op: Op, a=0, b: int = 0, payload=b"") -> None:
        if self.in_flight:
            raise CenterError(f"{op.name} sent while {self._op.name} still waits for its answer")
        versions = a if isinstance(a, tuple) else (a,) * len(self.clients)
        sliced = isinstance(payload, np.ndarray) and payload.size
        for client, (lo, hi), version in zip(self.clients, self.bounds, versions):
            client.send(op, version, b, payload[lo:hi] if sliced else payload)
        self._replies, self._op = [None] * len(self.clients), op

    def poll(self) -> Reply | None:
        if not self.in_flight:
            return None
        for i, client in enumerate(self.clients):
            if self._replies[i] is None:
                self._replies[i] = client.poll()
        return self._joined() if all(r is not None for r in self._replies) else None

    def wait(self) -> Reply:
        if not self.in_flight:
            raise CenterError("nothing to wait for: no request is in flight")
        for i, client in enumerate(self.clients):
            if self._replies[i] is None:
                self._replies[i] = client.wait()
        return self._joined()

    def call(self, op: Op, a=0, b: int = 0, payload=b"") -> Reply:
        self.send(op, a, b, payload)
        return self.wait()

    def each(self, op: Op) -> list[Reply]:
        """Every shard's own answer to `op` (a SNAPSHOT's parts are a center's, an average's
        and a spread's; STATUS counts per shard)."""
        self.send(op)
        for i, client in enumerate(self.clients):
            self._replies[i] = client.wait()
        replies, self._replies = self._replies, None
        self.last_op, self._op = self._op, None
        return replies

    def _joined(self) -> Reply:
        replies, self._replies = self._replies, None
        self.last_op, self._op = self._op, None
        values = [r.values for r in replies]
        joined = _join(values) if all(v.size for v in values) else values[0]
        versions = tuple(r.a for r in replies)
        return Reply(
            versions if len(replies) > 1 else versions[0],
            replies[0].b,
            joined,
            max(r.seconds for r in replies),
        )

    def close(self) -> None:
        for c in self.clients:
            c.close()


def _join(parts: list) -> np.ndarray:
    """Shards' parts as one vector; one shard's as it is (no copy of the model per message)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
