"""Compressed exchanges: what a model-sized message is on the wire, and the error feedback that
keeps what rounding loses.

A message is a flat float32 vector v. `float16` sends it at half precision. `int8` and `int4`
cut it into blocks of BLOCK values and send, per block, one float32 scale s = max|v_block| / q
(q = 127 for int8, 7 for int4) and the codes round(v / s), integers in [-q, q], one to a byte or
two to a byte: the receiver applies codes * s. Rounding is to the nearest, ties to even, as
NumPy's `round`. Every rank decodes the same bytes with the same operations, so all of them apply
bit for bit the same values.

Error feedback (Seide et al. 2014; Karimireddy et al. 2019): the sender adds what rounding lost
the last time, e, to its next message, and keeps what it loses now, e <- (v + e) - Q(v + e). Over
n exchanges the values applied sum to the exact messages' sum less the last e, which is at most
half a quantization step per value (s / 2, or float16's half unit in the last place).
"""

from __future__ import annotations

import math

from training.exchanges.base import COMPRESSIONS, collectives, tf

__all__ = ["COMPRESSIONS", "BLOCK", "LEVELS", "Codec", "Compressed", "total", "wire_bytes"]
# The largest code: symmetric, so that 0 is exact and -v is sent as exactly -(v).
LEVELS = {"int8": 127, "int4": 7}
# Values per scale: a float32 scale costs 4 bytes, 1/64 of an int8 block's bytes and 1/32 of an
# int4 block's; smaller blocks follow the values' magnitudes more closely.
BLOCK = 256


def wire_bytes(size: int, compression: str, block: int = BLOCK) -> int:
    """Bytes one message of `size` values puts on the wire, scales and padding included."""
    if compression == "none":
        return 4 * size
    if compression == "float16":
        return 2 * size
    blocks = math.ceil(size / block)
    per_code = 1 if compression == "int8" else 0.5
    return 4 * blocks + int(blocks * block * per_code)


class Codec:
    """Encodes a float32 vector of `size` values into one uint8 vector (what one allgather
    carries) and decodes it back."""

    def __init__(self, compression: str, size: int, block: int = BLOCK):
        if compression not in COMPRESSIONS or compression == "none":
            raise ValueError(
                f"compression must be one of {COMPRESSIONS[1:]}. Received: {compression!r}"
            )
        if compression == "int4" and block % 2:
            raise ValueError(f"int4 needs an even block size. Received: block={block}")
        self.compression, self.size, self.block = compression, size, block
        self.blocks = math.ceil(size / block)
        self.bytes = wire_bytes(size, compression, block)

    def encode(self, v):
        if self.compression == "float16":
            return tf.reshape(tf.bitcast(tf.cast(v, tf.float16), tf.uint8), [-1])
        q = LEVELS[self.compression]
        padded = tf.pad(v, [[0, self.blocks * self.block - self.size]])
        blocks = tf.reshape(padded, [self.blocks, self.block])
        scales = tf.reduce_max(tf.abs(blocks), axis=1) / tf.constant(q, tf.float32)
        safe = tf.where(scales > 0, scales, tf.ones_like(scales))
        codes = tf.clip_by_value(tf.round(blocks / safe[:, None]), -q, q)
        codes = tf.reshape(tf.cast(codes, tf.int8), [-1])
        if self.compression == "int8":
            packed = tf.bitcast(codes, tf.uint8)
        else:
            nibbles = tf.cast(tf.cast(codes, tf.int32) + 8, tf.uint8)  # 1..15
            pairs = tf.reshape(nibbles, [-1, 2])
            packed = tf.bitwise.bitwise_or(
                pairs[:, 0], tf.bitwise.left_shift(pairs[:, 1], tf.constant(4, tf.uint8))
            )
        return tf.concat([tf.reshape(tf.bitcast(scales, tf.uint8), [-1]), packed], 0)

    def decode(self, data):
        if self.compression == "float16":
            halves = tf.bitcast(tf.reshape(data, [self.size, 2]), tf.float16)
            return tf.cast(halves, tf.float32)
        scales = tf.bitcast(tf.reshape(data[: 4 * self.blocks], [self.blocks, 4]), tf.float32)
        packed = data[4 * self.blocks :]
        if self.compression == "int8":
            codes = tf.cast(tf.bitcast(packed, tf.int8), tf.float32)
        else:
            low = tf.bitwise.bitwise_and(packed, tf.constant(15, tf.uint8))
            high = tf.bitwise.right_shift(packed, tf.constant(4, tf.uint8))
            nibbles = tf.reshape(tf.stack([low, high], axis=1), [-1])
            codes = tf.cast(tf.cast(nibbles, tf.int32) - 8, tf.float32)
        values = tf.reshape(codes, [self.blocks, self.block]) * scales[:, None]
        return tf.reshape(values, [-1])[: self.size]


class Compressed:
    """One exchange's compressed messages, in the ranks: the codec for the model's size and the
    sender's error-feedback residual, a variable of the wrapper optimizer (so checkpoints keep
    what rounding has not yet delivered).

    `send` flattens the message, adds the residual, encodes it, allgathers every rank's bytes
    and decodes each of them on every rank, in rank order: every rank holds bit for bit the
    same decoded messages, so replicas of a center stay identical, and the sender applies to its
    own weights exactly what the others apply for it."""

    def __init__(self, compression: str, opt, var_list: list, name: str):
        self.shapes = [v.shape for v in var_list]
        self.sizes = [v.shape.num_elements() for v in var_list]
        self.codec = Codec(compression, sum(self.sizes))
        self.residual = opt.add_variable(
            (self.codec.size,), initializer="zeros", dtype="float32", name=f"{name}_residual"
        )

    def send(self, opt, values: list, name: str, ranks=None):
        """(each rank's decoded message as a list shaped like `values`, in the order of `ranks`
        (default: every rank), payload bytes, seconds); this rank's residual is updated."""
        flat = tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in values], 0)
        message = flat + self.residual.value
        data = self.codec.encode(message)
        (gathered,), _, seconds = collectives.timed_gather([data], name, ranks)
        members = list(ranks) if ranks is not None else list(range(collectives.size()))
        decoded = [self.codec.decode(gathered[j]) for j in range(len(members))]
        own = decoded[members.index(collectives.rank())]
        opt.assign(self.residual, message - own)
        dtypes = [v.dtype for v in values]
        return [self._shaped(d, dtypes) for d in decoded], self.codec.bytes, seconds

    def decode_all(self, gathered, count: int, dtypes: list) -> list:
        """Messages gathered elsewhere (a broadcast of a level's bytes), decoded alike."""
        return [self._shaped(self.codec.decode(gathered[j]), dtypes) for j in range(count)]

    def _shaped(self, flat, dtypes: list) -> list:
        parts = tf.split(flat, self.sizes)
        return [tf.cast(tf.reshape(p, s), d) for p, s, d in zip(parts, self.shapes, dtypes)]


def total(messages: list) -> list:
    """The sum of decoded messages, value by value, in their order (the same on every rank)."""
    out = list(messages[0])
    for message in messages[1:]:
        out = [a + b for a, b in zip(out, message)]
    return out
