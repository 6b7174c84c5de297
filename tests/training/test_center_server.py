"""The asynchronous center server over real sockets: what it computes, and what it refuses."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
import zmq

from training.center.client import CenterAborted, CenterClient, CenterError
from training.center.protocol import HEADER, Op
from training.center.server import CenterServer, CenterState

N = 6


@pytest.fixture
def serve():
    servers, clients = [], []

    def start(kind="elastic", workers=2, mode="thread", **kw):
        token = secrets.token_bytes(16)
        kw.setdefault("alpha", 0.25)
        server = CenterServer(
            kind, CenterState(np.arange(N, dtype="f4")), workers=workers, token=token, **kw
        )
        address = server.start(mode)
        servers.append(server)

        def client(rank, tok=token, timeout=5.0):
            precision = kw.get("precision", "float32")
            c = CenterClient(address, tok, rank, timeout=timeout, precision=precision, size=N)
            c.start(np.arange(N, dtype="f4"))
            clients.append(c)
            return c

        return server, client

    yield start
    for c in clients:
        c.close()
    for s in servers:
        s.stop()


def _snapshot(client) -> tuple[np.ndarray, int]:
    r = client.call(Op.SNAPSHOT)
    return r.values[:N], r.a


def test_elastic_write_moves_the_center_and_counts_staleness(serve):
    _, client = serve()
    w0, w1 = client(0), client(1)
    read0 = w0.call(Op.READ)
    read1 = w1.call(Op.READ)
    np.testing.assert_array_equal(read0.values, np.arange(N))
    e = np.full(N, 0.5, "f4")
    assert w1.call(Op.WRITE, a=read1.a, payload=e).b == 0  # nothing happened since its read
    # Worker 0 read version 0, and worker 1 wrote since: one version stale.
    answer = w0.call(Op.WRITE, a=read0.a, payload=e)
    assert (answer.a, answer.b) == (2, 1)
    center, version = _snapshot(w0)
    np.testing.assert_allclose(center, np.arange(N) + 1.0)
    assert version == 2


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_wrong_token_is_refused_and_changes_nothing(serve, mode):
    _, client = serve(mode=mode)
    honest = client(0)
    intruder = client(1, tok=secrets.token_bytes(16))
    for op, payload in ((Op.WRITE, np.ones(N, "f4")), (Op.READ, b""), (Op.LOAD, np.ones(N, "f4"))):
        with pytest.raises(CenterError, match="wrong token"):
            intruder.call(op, payload=payload)
    center, version = _snapshot(honest)
    np.testing.assert_array_equal(center, np.arange(N))
    assert version == 0


def test_wrong_shapes_ranks_and_kinds_are_refused(serve):
    _, client = serve(workers=2)
    w0 = client(0)
    with pytest.raises(CenterError, match=r"wrong shape: WRITE takes 6 values as float32 \(24 by"):
        w0.call(Op.WRITE, payload=np.ones(N + 1, "f4"))
    with pytest.raises(CenterError, match="PUSH is not an operation of the elastic center"):
        w0.call(Op.PUSH, payload=np.ones(N, "f4"))
    with pytest.raises(CenterError, match="rank 5 is not one of the job's 2 workers"):
        client(5).call(Op.READ)
    assert _snapshot(w0)[1] == 0


def test_garbage_and_oversized_frames_do_not_hurt_the_server(serve):
    server, client = serve()
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.address)
    raw.send_multipart([b"\xff" * HEADER.size, b"\x00\x01"])
    assert raw.poll(5000)
    assert b"not an EASGD center message" in raw.recv_multipart()[1]
    raw.send_multipart([b"junk"])
    assert raw.poll(5000)
    assert b"expected 2 frames" in raw.recv_multipart()[1]
    # Larger than any center: zmq drops the sender without bothering the server.
    raw.send_multipart([b"x" * HEADER.size, b"\x00" * (10 * 1024 * 1024)])
    raw.close(0)
    assert _snapshot(client(0))[1] == 0


def test_an_abort_reaches_every_worker(serve):
    _, client = serve()
    w0, w1 = client(0), client(1)
    w1.call(Op.ABORT, payload=b"training diverged at step 7")
    with pytest.raises(CenterAborted, match="rank 1: training diverged at step 7"):
        w0.call(Op.READ)


def test_a_dead_server_is_a_clear_error(serve):
    server, client = serve()
    w0 = client(0, timeout=0.5)
    server.stop()
    with pytest.raises(CenterError, match="did not answer READ within 0.5 s; rank 0"):
        w0.call(Op.READ)


def test_deterministic_turns_follow_rank_order(serve):
    _, client = serve(workers=3, deterministic=True)
    w = [client(r) for r in range(3)]
    # Rank 2 asks first, then rank 1: both wait for rank 0's turn.
    w[2].send(Op.READ)
    w[1].send(Op.READ)
    assert w[2].poll() is None and w[1].poll() is None
    r0 = w[0].call(Op.READ)
    w[0].call(Op.WRITE, a=r0.a, payload=np.ones(N, "f4"))
    r1 = w[1].wait()
    assert r1.a == 1  # it reads after rank 0's write
    with pytest.raises(CenterError, match="rank 2 wrote out of its turn"):
        client(2).call(Op.WRITE, payload=np.ones(N, "f4"))
    w[1].call(Op.WRITE, a=r1.a, payload=np.ones(N, "f4"))
    assert w[2].wait().a == 2
    # A worker that is done leaves the rotation.
    w[2].call(Op.WRITE, a=2, payload=np.ones(N, "f4"))
    w[1].call(Op.DONE)
    w[0].call(Op.WRITE, a=w[0].call(Op.READ).a, payload=np.ones(N, "f4"))
    assert w[2].call(Op.READ).a == 4


@pytest.mark.parametrize("average", ["time", "moving"])
def test_downpour_push_and_the_masters_averages(serve, average):
    _, client = serve(kind="downpour", average=average, average_rate=0.5)
    w0 = client(0)
    c0 = np.arange(N, dtype="f8")
    z = c0.copy()
    c = c0.copy()
    for k in (1, 2):
        answer = w0.call(Op.PUSH, a=k - 1, payload=np.full(N, 2.0, "f4"))
        c = c + 2.0
        z = z + (c - z) / (k + 1) if average == "time" else 0.5 * z + 0.5 * c
        np.testing.assert_allclose(answer.values, c)
        assert answer.b == 0
    snap = w0.call(Op.SNAPSHOT).values
    np.testing.assert_allclose(snap[N : 2 * N], z, rtol=1e-6)
    # A resume loads center, average and counters back.
    w0.call(Op.LOAD, a=9, b=4, payload=np.zeros(2 * N, "f4"))
    r = w0.call(Op.SNAPSHOT)
    assert (r.a, r.b) == (9, 4) and not r.values[: 2 * N].any()


def test_a_float16_exchange_halves_the_bytes_and_adds_in_float32(serve):
    _, client = serve(precision="float16")
    w0 = client(0)
    read = w0.call(Op.READ)
    np.testing.assert_array_equal(read.values, np.arange(N))  # small integers are exact
    before = w0.bytes_sent
    e = np.full(N, 1 / 3, "f4")
    w0.call(Op.WRITE, a=read.a, payload=e)
    assert w0.bytes_sent - before == 2 * N
    center, _ = _snapshot(w0)  # float32: the sum of the center and the rounded e
    np.testing.assert_array_equal(center, np.arange(N, dtype="f4") + np.float16(1 / 3).astype("f4"))
    with pytest.raises(CenterError, match=r"WRITE takes 6 values as float16 \(12 bytes\), rec"):
        w0.send(Op.WRITE, payload=b"\0" * 24)
        w0.wait()


def test_an_abort_answers_the_workers_waiting_for_their_turn(serve):
    _, client = serve(workers=3, deterministic=True)
    w = [client(r) for r in range(3)]
    w[2].send(Op.READ)  # waits for ranks 0 and 1
    w[1].call(Op.ABORT, payload=b"diverged")
    with pytest.raises(CenterAborted, match="rank 1: diverged"):
        w[2].wait()


def test_only_rank_0_loads_a_center(serve):
    _, client = serve()
    with pytest.raises(CenterError, match="only rank 0 loads"):
        client(1).call(Op.LOAD, payload=np.zeros(N, "f4"))
    assert _snapshot(client(0))[1] == 0


def test_int4_codes_both_ways_with_error_feedback(serve):
    """Up: the worker's e as codes, the server adding exactly what the worker subtracts, the
    rest sent later. Down: the center as the difference from the worker's replica, which
    closes in on the center answer after answer."""
    server, client = serve(precision="int4")
    w0, w1 = client(0), client(1)
    read = w0.call(Op.READ)
    np.testing.assert_array_equal(read.values, np.arange(N))  # no change yet: exact
    e = np.array([0.3, -0.05, 0.012, 0.9, 0.0, -0.4], "f4")
    before = w0.bytes_sent
    w0.call(Op.WRITE, a=read.a, payload=e)
    assert w0.bytes_sent - before == 4 + 128  # one float32 scale, 256 codes of 4 bits
    sent = w0.applied
    np.testing.assert_allclose(sent, np.array([2, 0, 0, 7, 0, -3]) * 0.9 / 7, rtol=1e-6)
    np.testing.assert_array_equal(w0.up.residual, e - sent)
    center, _ = _snapshot(w0)
    np.testing.assert_array_equal(center, np.arange(N, dtype="f4") + sent)
    # rank 1 last saw the starting center: each answer moves its replica toward the center.
    gaps = []
    for _ in range(4):
        seen = w1.call(Op.READ).values
        gaps.append(float(np.max(np.abs(seen - center))))
        np.testing.assert_array_equal(seen, server.replicas[1])
    assert gaps[0] <= float(np.max(np.abs(sent))) / 14 + 1e-7
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3 * gaps[0]
    with pytest.raises(CenterError, match=r"WRITE takes 6 values as int4 \(132 bytes\)"):
        w0.send(Op.WRITE, payload=b"\0" * 24)
        w0.wait()


def test_backup_workers_means_are_never_coded():
    with pytest.raises(ValueError, match="float32 or float16, not int8 codes"):
        CenterServer(
            "backup",
            CenterState(np.zeros(N, "f4")),
            workers=2,
            token=bytes(16),
            precision="int8",
        )


def test_a_sharded_center_answers_as_one():
    """Two servers, each with a contiguous part: a read joins the parts, a write splits the
    payload, each shard counts its own version."""
    from training.center.client import ShardedClient, shard_bounds

    assert shard_bounds(6, 4) == [(0, 2), (2, 4), (4, 5), (5, 6)]
    with pytest.raises(ValueError, match="3 center shards cannot split 2 values"):
        shard_bounds(2, 3)
    token, bounds = secrets.token_bytes(16), shard_bounds(N, 2)
    center = np.arange(N, dtype="f4")
    servers = [
        CenterServer("elastic", CenterState(center[lo:hi]), workers=2, token=token, alpha=0.5)
        for lo, hi in bounds
    ]
    addresses = [s.start() for s in servers]
    w0 = ShardedClient(addresses, bounds, token, 0, timeout=5.0)
    try:
        read = w0.call(Op.READ)
        np.testing.assert_array_equal(read.values, center)
        assert read.a == (0, 0)
        w0.call(Op.WRITE, a=read.a, payload=np.ones(N, "f4"))
        assert [s.center.tolist() for s in servers] == [[1, 2, 3], [4, 5, 6]]
        assert w0.bytes_sent == 4 * N and w0.applied.tolist() == [1.0] * N
        parts = w0.each(Op.SNAPSHOT)
        assert [p.a for p in parts] == [1, 1] and not w0.in_flight
    finally:
        w0.close()
        for s in servers:
            s.stop()
