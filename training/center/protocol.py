"""The wire format between workers and the asynchronous center server.

Every message is two frames: a fixed 40-byte header and a payload of raw little-endian float32
values (for the model-sized payloads of a compressed job, float16, or int8/int4 codes with their
scales, training/center/codes.py; or, for an error, its UTF-8 text). Nothing is pickled, so a peer can send the server only
numbers of an agreed length; a message of any other shape is answered with an error and changes
nothing. Imports neither TensorFlow nor Horovod: the server may run in a process without them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

MAGIC = b"EASG"
PROTOCOL = 1
# magic, protocol, op or status, rank, token, a, b (the payload's length is its frame's)
HEADER = struct.Struct("<4sBBH16sqq")
TOKEN_BYTES = 16
ERROR_TEXT_MAX = 2000
PRECISIONS = {"float32": "<f4", "float16": "<f2"}
# How model-sized payloads may travel: those two, or int8/int4 codes (training/center/codes.py).
WIRE_FORMS = ("float32", "float16", "int8", "int4")
# The operations whose model-sized payloads (both ways) travel in the job's wire precision;
# SNAPSHOT and LOAD, rank 0's reads and writes of the whole state, stay float32.
WIRE_OPS = (1, 2, 3, 9)


class Op(IntEnum):
    """What a worker asks. `a` and `b` are two integers whose meaning each op gives."""

    READ = 1  # -> the center; a: its version
    # WRITE and PUSH: b is the microseconds the worker has waited for the center so far.
    WRITE = 2  # payload e, a: the version read -> center += e; a: new version, b: staleness
    PUSH = 3  # payload update, a: version pulled -> center += update; the center back
    SNAPSHOT = 4  # -> center (and the average), a: version, b: updates; payload[-1]: spread
    LOAD = 5  # payload center (and the average), a: version, b: updates (a resume)
    DONE = 6  # this worker took its last step
    ABORT = 7  # payload: UTF-8 reason; every later reply carries it
    # payload g, a: the step it is for -> a: steps done; payload: the means of the steps from a
    # to steps done (one when on time); b: how many steps late it came (0: on time, counted)
    GRADIENT = 9
    STATUS = 8  # -> a: workers done, b: workers; per rank: exchanges, staleness sum, max, wait


class Status(IntEnum):
    OK = 0
    ERROR = 1  # this request was refused; payload: why
    ABORTED = 2  # the job was aborted by a worker; payload: its reason


@dataclass(frozen=True)
class Message:
    op: int
    rank: int
    token: bytes
    a: int
    b: int
    payload: bytes

    def values(self, dtype: str = "<f4") -> np.ndarray:
        """The payload as float32 (converted from `dtype`, the job's wire precision)."""
        return np.frombuffer(self.payload, dtype=dtype).astype("<f4", copy=False)

    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")[:ERROR_TEXT_MAX]


class ProtocolError(ValueError):
    """A message the other side should not have sent (wrong magic, size or shape)."""


def encode(op: int, rank: int, token: bytes, a: int = 0, b: int = 0, payload=b"") -> list:
    """Two frames; `payload` is bytes or a float32 array (sent without a copy)."""
    if isinstance(payload, np.ndarray):
        wire = "<f2" if payload.dtype == np.float16 else "<f4"
        payload = np.ascontiguousarray(payload, dtype=wire)
    return [HEADER.pack(MAGIC, PROTOCOL, int(op), rank, token, int(a), int(b)), payload]


def decode(frames: list) -> Message:
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames (header, payload), received {len(frames)}")
    header, payload = bytes(frames[0]), bytes(frames[1])
    if len(header) != HEADER.size:
        raise ProtocolError(f"header of {len(header)} bytes, expected {HEADER.size}")
    magic, protocol, op, rank, token, a, b = HEADER.unpack(header)
    if magic != MAGIC or protocol != PROTOCOL:
        raise ProtocolError(
            f"not an EASGD center message (magic {magic!r}, protocol {protocol}; expected "
            f"{MAGIC!r}, {PROTOCOL})"
        )
    return Message(op, rank, token, a, b, payload)


def error_frames(status: Status, text: str) -> list:
    return encode(status, 0, bytes(TOKEN_BYTES), payload=text.encode("utf-8")[:ERROR_TEXT_MAX])
