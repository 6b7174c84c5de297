"""Horovod collectives with their cost measured inside the graph.

Each call returns the payload bytes this rank contributed and the seconds the collective took
(`tf.timestamp` around it, ordered by control dependencies), so the cost can be accumulated in
optimizer variables and read by the training loop without leaving the `tf.function`.

`bytes` is the tensor payload a rank hands to the collective. A ring all-reduce puts about
2 (p - 1) / p times that on the wire; the payload is what differs between algorithms, and it is
what the paper's communication-period argument is about.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import horovod.tensorflow as hvd
import tensorflow as tf

from training.exchanges import groups

_initialized = False
# Tree EASGD's groups, and Horovod's process set for each rank set that needs one.
_layout: groups.Layout | None = None
_process_sets: dict[tuple[int, ...], hvd.ProcessSet] = {}


def init(group_size: int | None = None) -> None:
    """Initialise Horovod once; pin each rank to the GPU of its local rank when GPUs are visible.

    `group_size` (Tree EASGD) also registers the process sets of its groups and of their leaders
    (`training.exchanges.groups`). Horovod 0.28.1 takes them only here, in `hvd.init`, the same on every
    rank: a later `hvd.add_process_set` needs dynamic process sets, which slowed every collective
    down on Gloo (docs/algorithms/tree.md)."""
    global _initialized, _layout
    if _initialized:
        return
    if group_size is not None:
        _layout = groups.layout(groups.launched().size, group_size)
        _process_sets.update({r: hvd.ProcessSet(list(r)) for r in _layout.process_sets()})
    hvd.init(process_sets=list(_process_sets.values()) or None)
    if _layout is not None and _layout.size != hvd.size():
        raise groups.GroupError(
            f"optimizer.group_size: the launcher announced {_layout.size} ranks but Horovod "
            f"started {hvd.size()}; launch with horovodrun (received: {group_size})"
        )
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
    _initialized = True


def rank() -> int:
    return hvd.rank()


def local_rank() -> int:
    return hvd.local_rank()


def size() -> int:
    return hvd.size()


def host_count() -> int:
    """Hosts in the job, as Horovod placed it (rank 0 has local rank 0, so its cross size is the
    number of hosts), whatever the configuration or -H said."""
    return hvd.cross_size()


def host_names() -> list[str]:
    """Each host's name, in rank order, once: where Horovod ran the ranks (a scheduler's nodes,
    say), for the run's record. A collective: every rank calls it."""
    names = hvd.allgather_object(socket.gethostname())
    return list(dict.fromkeys(names))


def _payload_bytes(tensors: Sequence[tf.Tensor]) -> int:
    total = 0
    for t in tensors:
        n = t.shape.num_elements()
        if n is None:
            raise ValueError(f"collectives need static shapes; received shape {t.shape}")
        total += n * t.dtype.size
    return total


def init_tree(group_size: int | None = None) -> groups.Layout:
    """Initialise Horovod with Tree EASGD's groups, or check that it has their process sets, and
    return the groups. `None`: the groups Horovod has, else the ranks of one host."""
    if not _initialized:
        layout = groups.resolve(group_size, groups.launched())
        init(layout.group_size)
        return layout
    if group_size is not None:
        layout = groups.layout(hvd.size(), group_size)
    else:
        placed = groups.Launch(hvd.size(), hvd.local_size(), hvd.cross_size())
        layout = _layout or groups.resolve(None, placed)
    if any(ranks not in _process_sets for ranks in layout.process_sets()):
        have = f"groups of {_layout.group_size}" if _layout else "no groups"
        raise groups.GroupError(
            f"optimizer.group_size: Horovod was initialised with {have}, and Horovod 0.28.1 "
            "registers process sets only when it starts; call "
            f"training.exchanges.collectives.init_tree({group_size}) before anything else "
            f"(received: {'null' if group_size is None else group_size})"
        )
    return layout


def _process_set(ranks: Sequence[int] | None):
    """Horovod's process set for these ranks (None, or every rank: the global set)."""
    if ranks is None or len(ranks) == hvd.size():
        return hvd.global_process_set
    return _process_sets[tuple(ranks)]


def _timed(tensors: Sequence[tf.Tensor], collective) -> tuple[list[tf.Tensor], tf.Tensor]:
    start = tf.timestamp()
    with tf.control_dependencies([start]):
        inputs = [tf.identity(t) for t in tensors]
    results = collective(inputs)
    with tf.control_dependencies(results):
        seconds = tf.timestamp() - start
    return list(results), seconds


def timed_sum(
    tensors: Sequence[tf.Tensor], name: str, ranks: Sequence[int] | None = None
) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    """All-reduce (Sum) a group of tensors in one collective: (results, payload bytes, seconds).
    `ranks`: only among these (a process set `init` registered); every rank by default."""
    tensors = list(tensors)
    if len(ranks or range(hvd.size())) == 1:
        results, seconds = _timed(tensors, lambda inputs: inputs)
    else:
        process_set = _process_set(ranks)
        results, seconds = _timed(
            tensors,
            lambda inputs: hvd.grouped_allreduce(
                inputs, op=hvd.Sum, name=name, process_set=process_set
            ),
        )
    return results, _payload_bytes(tensors), seconds


def timed_broadcast(
    tensors: Sequence[tf.Tensor], root_rank: int, name: str, ranks: Sequence[int]
) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    """Broadcast tensors from `root_rank` (a global rank) to `ranks`: (results, bytes this rank
    sends, seconds). Only the root sends: the others' bytes are 0."""
    tensors = list(tensors)
    if len(ranks) == 1:
        results, seconds = _timed(tensors, lambda inputs: inputs)
    else:
        process_set = _process_set(ranks)
        results, seconds = _timed(
            tensors,
            lambda inputs: [
                hvd.broadcast(t, root_rank, name=f"{name}_{i}", process_set=process_set)
                for i, t in enumerate(inputs)
            ],
        )
    return results, _payload_bytes(tensors) if hvd.rank() == root_rank else 0, seconds


def timed_alltoall(
    tensor: tf.Tensor, splits: Sequence[int], name: str
) -> tuple[tf.Tensor, int, tf.Tensor]:
    """Rows `splits[l]` of `tensor` (taken in rank order) go to rank l; returns the rows this
    rank received, in the order of the ranks that sent them, the payload bytes this rank hands
    over (what it sends), and the seconds."""
    if hvd.size() == 1:
        (result,), seconds = _timed([tensor], lambda inputs: inputs)
    else:
        splits_t = tf.constant(list(splits), tf.int32)
        (result,), seconds = _timed(
            [tensor], lambda inputs: [hvd.alltoall(inputs[0], splits=splits_t, name=name)[0]]
        )
    return result, _payload_bytes([tensor]), seconds


def timed_mean(tensors: Sequence[tf.Tensor], name: str) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    results, nbytes, seconds = timed_sum(tensors, name)
    scale = 1.0 / hvd.size()
    return [r * tf.cast(scale, r.dtype) for r in results], nbytes, seconds


def timed_gather(
    tensors: Sequence[tf.Tensor], name: str, send: bool = True
) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    """Every rank's copy of each tensor, stacked by rank (shape [senders, *shape]), from one
    allgather of this rank's tensors flattened together: (results, payload bytes, seconds).
    Every rank takes part: Horovod 0.28.1's allgather fails on Gloo in a process set other than
    the global one ("Process set provided does not exist, or has not been registered"); a rank
    with `send` False hands in no row (and counts no bytes), so only the senders' rows come back,
    in rank order."""
    tensors = list(tensors)
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1:
        raise ValueError(f"timed_gather needs one dtype; received {sorted(d.name for d in dtypes)}")
    start = tf.timestamp()
    with tf.control_dependencies([start]):
        flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)[None, :]
        if not send:
            flat = flat[:0]
    gathered = flat if hvd.size() == 1 else hvd.allgather(flat, name=name)
    with tf.control_dependencies([gathered]):
        seconds = tf.timestamp() - start
    sizes = [t.shape.num_elements() for t in tensors]
    parts = tf.split(gathered, sizes, axis=1)
    results = [tf.reshape(p, [-1, *t.shape]) for p, t in zip(parts, tensors)]
    return results, _payload_bytes(tensors) if send else 0, seconds


def sum_scalar(value: tf.Tensor, name: str) -> tf.Tensor:
    """A monitoring all-reduce (not counted as the algorithm's communication)."""
    if hvd.size() == 1:
        return value
    return hvd.allreduce(value, op=hvd.Sum, name=name)


def broadcast_variables(variables: Sequence, root_rank: int = 0) -> None:
    """Broadcast Keras 3 or tf variables from the root (Keras 3 needs the backing tf.Variable)."""
    if hvd.size() == 1:
        return
    backing = [getattr(v, "value", v) if not isinstance(v, tf.Variable) else v for v in variables]
    hvd.broadcast_variables(backing, root_rank=root_rank)


def broadcast_object(obj, root_rank: int = 0):
    if hvd.size() == 1:
        return obj
    return hvd.broadcast_object(obj, root_rank=root_rank)


def allgather_object(obj) -> list:
    if hvd.size() == 1:
        return [obj]
    return hvd.allgather_object(obj)


def barrier() -> None:
    if hvd.size() > 1:
        hvd.allreduce(tf.constant(0.0), op=hvd.Sum, name="easgd_barrier")


def center_host() -> str:
    """Where rank 0's center server listens: loopback when the job is on one host, else the
    address of the interface Horovod's own traffic uses (never every interface)."""
    import os
    import socket

    import psutil

    if hvd.cross_size() == 1:
        return "127.0.0.1"
    iface = os.environ.get("HOROVOD_GLOO_IFACE") or os.environ.get("NCCL_SOCKET_IFNAME")
    for name in (iface or "").split(","):
        for addr in psutil.net_if_addrs().get(name.strip(), []):
            if addr.family == socket.AF_INET:
                return addr.address
    return socket.gethostbyname(os.environ.get("HOROVOD_HOSTNAME") or socket.gethostname())
