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

from training.center.protocol import PRECISIONS, WIRE_OPS, Op, Status, decode, encode

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
    ):
        self.address, self.token, self.rank = address, token, rank
        self.precision = precision
        self.wire = PRECISIONS[precision]
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

    def send(self, op: Op, a: int = 0, b: int = 0, payload=b"") -> None:
        if self.in_flight:
            raise CenterError(f"{op.name} sent while {self._op.name} still waits for its answer")
        if isinstance(payload, np.ndarray) and op in WIRE_OPS:
            payload = payload.astype(self.wire, copy=False)
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
        return Reply(m.a, m.b, m.values(self.wire if op in WIRE_OPS else "<f4"), seconds)

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()
