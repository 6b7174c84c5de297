"""Compressed messages (training/exchanges/compression.py) against values worked out by hand, and
error feedback's promise: over many exchanges, the values applied sum to the exact messages' sum
less the last residual, which is at most half a quantization step per value."""

from __future__ import annotations

import numpy as np
import pytest

from training.exchanges.compression import BLOCK, Codec, wire_bytes

tf = pytest.importorskip("tensorflow")

# Two blocks of 4: amax 1.0 and 2.0.
V = np.array([1.0, -0.6, 0.25, 0.0, 2.0, 1.1, -0.5, 0.3], np.float32)


def _roundtrip(compression: str, v: np.ndarray, block: int = 4):
    codec = Codec(compression, len(v), block)
    data = codec.encode(tf.constant(v))
    return codec, data.numpy(), codec.decode(data).numpy()


def test_int8_by_hand():
    codec, data, back = _roundtrip("int8", V)
    # Scales 1/127 and 2/127 (float32 bytes first), then one code a byte:
    # 1.0*127 = 127, -0.6*127 = -76.2 -> -76, 0.25*127 = 31.75 -> 32, 0;
    # 2.0/(2/127) = 127, 1.1 -> 69.85 -> 70, -0.5 -> -31.75 -> -32, 0.3 -> 19.05 -> 19.
    scales = data[:8].view(np.float32)
    assert scales.tolist() == [np.float32(1 / 127), np.float32(2 / 127)]
    assert data[8:].view(np.int8).tolist() == [127, -76, 32, 0, 127, 70, -32, 19]
    expected = [1.0, -76 / 127, 32 / 127, 0.0, 2.0, 140 / 127, -64 / 127, 38 / 127]
    assert back == pytest.approx(expected, rel=1e-6)
    assert len(data) == codec.bytes == 2 * 4 + 8


def test_int4_by_hand_two_codes_a_byte():
    codec, data, back = _roundtrip("int4", V)
    # Scales 1/7 and 2/7; codes 7, -4.2 -> -4, 1.75 -> 2, 0; 7, 3.85 -> 4, -1.75 -> -2, 1.05 -> 1;
    # stored as code + 8 in a nibble, the first of each pair in the low one.
    assert data[:8].view(np.float32).tolist() == [np.float32(1 / 7), np.float32(2 / 7)]
    nibbles = [(b & 15, b >> 4) for b in data[8:].tolist()]
    assert nibbles == [(15, 4), (10, 8), (15, 12), (6, 9)]
    expected = [1.0, -4 / 7, 2 / 7, 0.0, 2.0, 8 / 7, -4 / 7, 2 / 7]
    assert back == pytest.approx(expected, rel=1e-6)
    assert len(data) == codec.bytes == 2 * 4 + 4


def test_float16_and_the_last_block_padded():
    _, data, back = _roundtrip("float16", V)
    assert (
        len(data) == 2 * len(V)
        and back.tolist() == V.astype(np.float16).astype(np.float32).tolist()
    )
    v = np.arange(1, 11, dtype=np.float32)  # 10 values in blocks of 4: the last one padded
    codec, data, back = _roundtrip("int8", v)
    assert len(data) == codec.bytes == wire_bytes(10, "int8", 4) == 3 * 4 + 12
    assert back == pytest.approx(v, rel=0.01)


def test_bytes_on_the_wire():
    n = 1_000_000
    assert wire_bytes(n, "none") == 4 * n and wire_bytes(n, "float16") == 2 * n
    blocks = -(-n // BLOCK)
    assert wire_bytes(n, "int8") == 4 * blocks + BLOCK * blocks
    assert wire_bytes(n, "int4") == 4 * blocks + BLOCK * blocks // 2
    assert wire_bytes(n, "int4") / wire_bytes(n, "none") == pytest.approx(0.129, abs=0.001)


@pytest.mark.parametrize("compression", ["float16", "int8", "int4"])
def test_error_feedback_loses_nothing_over_time(compression):
    """e <- (d + e) - Q(d + e) over 300 exchanges of random differences: the applied values sum to
    the exact ones less the last residual, and that residual is at most half a step."""
    rng = np.random.default_rng(5)
    size, block = 1000, 64
    codec = Codec(compression, size, block)
    residual = np.zeros(size, np.float32)
    applied = np.zeros(size, np.float64)
    exact = np.zeros(size, np.float64)
    for _ in range(300):
        d = (rng.normal(size=size) * rng.uniform(0.01, 1)).astype(np.float32)
        sent = d + residual
        q = codec.decode(codec.encode(tf.constant(sent))).numpy()
        residual = sent - q
        applied += q
        exact += d
    assert np.abs(applied - (exact - residual)).max() < 1e-3  # float32 sums of 300 terms
    if compression == "float16":
        step = np.spacing(np.abs(sent).astype(np.float16)).astype(np.float32)
    else:
        levels = {"int8": 127, "int4": 7}[compression]
        padded = np.pad(np.abs(sent), (0, -size % block)).reshape(-1, block)
        step = np.repeat(padded.max(axis=1) / levels, block)[:size]
    assert np.all(np.abs(residual) <= step / 2 * (1 + 1e-5) + 1e-12)


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="compression must be one of"):
        Codec("int2", 10)
    with pytest.raises(ValueError, match="even block"):
        Codec("int4", 10, block=5)


@pytest.mark.parametrize("compression", ["float16", "int8", "int4"])
@pytest.mark.parametrize("size", [5, 256, 1000, 3001])
def test_the_center_servers_numpy_codes_are_the_same_bytes(compression, size):
    """A worker's message reads the same whichever side encoded it: the graph's codec inside
    a training step and the NumPy one of the center server."""
    from training.center import codes

    rng = np.random.default_rng(size)
    v = (rng.normal(size=size) * rng.choice([1e-3, 1.0, 30.0], size=size)).astype(np.float32)
    codec = Codec(compression, size)
    graph = codec.encode(tf.constant(v)).numpy().tobytes()
    assert codes.encode(v, compression) == graph and len(graph) == codes.wire_bytes(
        size, compression
    )
    back = codec.decode(tf.constant(np.frombuffer(graph, np.uint8))).numpy()
    assert codes.decode(graph, size, compression).tobytes() == back.tobytes()
    with pytest.raises(ValueError, match=f"a {compression} message of {size} values is"):
        codes.decode(graph[:-1], size, compression)
