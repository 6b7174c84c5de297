"""The center server's compressed messages, in NumPy: the bytes of
`training.exchanges.compression.Codec` (float16 values; or per block of BLOCK values one float32
scale, the scales first, then int8 codes, or int4 codes two to a byte, the first in the low
nibble), so that a worker's message reads the same whichever side encoded it (a test holds the
two to the same bytes). Imports neither TensorFlow nor Horovod: the server may run without them.
"""

from __future__ import annotations

import math

import numpy as np

LEVELS = {"int8": 127, "int4": 7}
BLOCK = 256


def wire_bytes(size: int, compression: str, block: int = BLOCK) -> int:
    """Bytes of one message of `size` values, scales and padding included ("none" and
    "float32": plain float32)."""
    if compression in ("none", "float32"):
        return 4 * size
    if compression == "float16":
        return 2 * size
    blocks = math.ceil(size / block)
    return 4 * blocks + (blocks * block if compression == "int8" else blocks * block // 2)


def encode(v: np.ndarray, compression: str, block: int = BLOCK) -> bytes:
    v = np.asarray(v, dtype="<f4").ravel()
    if compression == "float16":
        return v.astype("<f2").tobytes()
    q = np.float32(LEVELS[compression])
    blocks = math.ceil(v.size / block)
    padded = np.zeros(blocks * block, dtype="<f4")
    padded[: v.size] = v
    padded = padded.reshape(blocks, block)
    scales = (np.max(np.abs(padded), axis=1) / q).astype("<f4")
    safe = np.where(scales > 0, scales, np.float32(1.0)).astype("<f4")
    codes = np.clip(np.round(padded / safe[:, None]), -q, q).astype(np.int8).ravel()
    if compression == "int8":
        packed = codes.view(np.uint8)
    else:
        nibbles = (codes.astype(np.int16) + 8).astype(np.uint8).reshape(-1, 2)
        packed = nibbles[:, 0] | (nibbles[:, 1] << 4)
    return scales.tobytes() + packed.tobytes()


def decode(data: bytes, size: int, compression: str, block: int = BLOCK) -> np.ndarray:
    """The float32 values a message carries; a message of another length is refused."""
    expected = wire_bytes(size, compression, block)
    if len(data) != expected:
        raise ValueError(
            f"a {compression} message of {size} values is {expected} bytes, received {len(data)}"
        )
    raw = np.frombuffer(data, dtype=np.uint8)
    if compression == "float16":
        return raw.view("<f2").astype("<f4")
    blocks = math.ceil(size / block)
    scales = raw[: 4 * blocks].view("<f4")
    packed = raw[4 * blocks :]
    if compression == "int8":
        codes = packed.view(np.int8).astype("<f4")
    else:
        pairs = np.stack([packed & 15, packed >> 4], axis=1).ravel()
        codes = pairs.astype("<f4") - 8
    return (codes.reshape(blocks, block) * scales[:, None]).ravel()[:size].astype("<f4")


class Sender:
    """One direction of one link, compressed with error feedback: `send(v)` returns the bytes
    of Q(v + e) and keeps e <- (v + e) - Q(v + e); `sent` is what the receiver applies."""

    def __init__(self, size: int, compression: str):
        self.size, self.compression = size, compression
        self.residual = np.zeros(size, dtype="<f4")
        self.sent = np.zeros(size, dtype="<f4")

    def send(self, v: np.ndarray) -> bytes:
        message = np.asarray(v, dtype="<f4") + self.residual
        data = encode(message, self.compression)
        self.sent = decode(data, self.size, self.compression)
        self.residual = message - self.sent
        return data
