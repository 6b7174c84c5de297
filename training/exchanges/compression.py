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

from training.center.codes import BLOCK, LEVELS, wire_bytes
from training.exchanges.base import COMPRESSIONS, Flat, collectives, tf, total

__all__ = ["COMPRESSIONS", "BLOCK", "LEVELS", "Codec", "Compressed", "total", "wire_bytes"]


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

    def __init__(self, compression: str, opt, var_list: list, name: str, feedback: bool = True):
        """`feedback` False: no residual (an exchange whose replicas already carry what was
        not sent, as consensus SGD's copies of its neighbours do)."""
        self.layout = Flat(var_list)
        self.codec = Codec(compression, self.layout.size)
        self.residual = None
        if feedback:
            self.residual = opt.add_variable(
                (self.codec.size,), initializer="zeros", dtype="float32", name=f"{name}_residual"
            )

    def send(self, opt, values: list, name: str):
        """(this rank's message decoded, each rank's decoded message, in rank order, each shaped
        like `values`; payload bytes; seconds); this rank's residual is updated."""
        return self.gather(opt, values, name, range(collectives.size()))

    def gather(self, opt, values: list, name: str, rows, sender: bool = True):
        """(this rank's message decoded, and the decoded messages of the chosen `rows` of one
        allgather (indices among the senders' rows, in rank order), each shaped like `values`;
        payload bytes; seconds). A rank that is not a `sender` hands in no row but keeps its
        residual as if it had sent: it holds the same message as a sender (the tree's group
        members hold their leader's), and so the same residual."""
        own, data = self.pack(opt, values)
        (gathered,), nbytes, seconds = collectives.timed_gather([data], name, sender)
        dtypes = [v.dtype for v in values]
        decoded = [self.layout.shaped(f, dtypes) for f in self.decode_rows(gathered, rows)]
        return self.layout.shaped(own, dtypes), decoded, nbytes, seconds

    def pack(self, opt, values: list):
        """(this rank's message as every rank will decode it, flat; its bytes); the residual
        keeps what rounding left out.

        Its own message is decoded from its own bytes, never taken from gathered rows: the ops
        that sum the rows are then the same on every rank, whichever row is its own
        (TensorFlow's graph rewrites may fuse a product into a sum only where it has one
        consumer, and a fused multiply-add rounds once: replicas would differ in the last
        bit)."""
        message, data = self.encode(values)
        own = self.codec.decode(data)
        if self.residual is not None:
            opt.assign(self.residual, message - own)
        return own, data

    def encode(self, values: list):
        """(the message, values + residual flattened; its bytes)."""
        flat = self.layout.flat(values)
        message = flat if self.residual is None else flat + self.residual.value
        return message, self.codec.encode(message)

    def reset(self) -> None:
        """What rounding left out starts again at 0 (a resume with another number of workers:
        the residual restored was rank 0's own)."""
        if self.residual is not None:
            self.residual.assign(tf.zeros_like(self.residual.value))

    def decode_rows(self, gathered, rows) -> list:
        """The chosen rows of bytes gathered, each decoded alike (flat)."""
        return [self.codec.decode(gathered[j]) for j in rows]
