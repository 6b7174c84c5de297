"""Horovod collectives with their cost measured inside the graph.

Each call returns the payload bytes this rank contributed and the seconds the collective took
(`tf.timestamp` around it, ordered by control dependencies), so the cost can be accumulated in
optimizer variables and read by the training loop without leaving the `tf.function`.

`bytes` is the tensor payload a rank hands to the collective. A ring all-reduce puts about
2 (p - 1) / p times that on the wire; the payload is what differs between algorithms, and it is
what the paper's communication-period argument is about.
"""

from __future__ import annotations

from collections.abc import Sequence

import horovod.tensorflow as hvd
import tensorflow as tf

_initialized = False


def init() -> None:
    """Initialise Horovod once; pin each rank to the GPU of its local rank when GPUs are visible."""
    global _initialized
    if _initialized:
        return
    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
    _initialized = True


def rank() -> int:
    return hvd.rank()


def size() -> int:
    return hvd.size()


def host_count() -> int:
    """Hosts in the job, as Horovod placed it (rank 0 has local rank 0, so its cross size is the
    number of hosts), whatever the configuration or -H said."""
    return hvd.cross_size()


def _payload_bytes(tensors: Sequence[tf.Tensor]) -> int:
    total = 0
    for t in tensors:
        n = t.shape.num_elements()
        if n is None:
            raise ValueError(f"collectives need static shapes; received shape {t.shape}")
        total += n * t.dtype.size
    return total


def _timed(tensors: Sequence[tf.Tensor], collective) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    """`collective` (inputs -> results) timed with `tf.timestamp` around it: (results, payload
    bytes of `tensors`, seconds). With one rank the inputs are the results."""
    tensors = list(tensors)
    start = tf.timestamp()
    with tf.control_dependencies([start]):
        inputs = [tf.identity(t) for t in tensors]
    results = inputs if hvd.size() == 1 else list(collective(inputs))
    with tf.control_dependencies(results):
        seconds = tf.timestamp() - start
    return results, _payload_bytes(tensors), seconds


def timed_sum(tensors: Sequence[tf.Tensor], name: str) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    """All-reduce (Sum) a group of tensors in one collective: (results, payload bytes, seconds)."""
    return _timed(tensors, lambda inputs: hvd.grouped_allreduce(inputs, op=hvd.Sum, name=name))


def timed_alltoall(
    tensor: tf.Tensor, splits: Sequence[int], name: str
) -> tuple[tf.Tensor, int, tf.Tensor]:
    """Rows `splits[l]` of `tensor` (taken in rank order) go to rank l; returns the rows this
    rank received, in the order of the ranks that sent them, the payload bytes this rank hands
    over (what it sends), and the seconds."""
    splits = tf.constant(list(splits), tf.int32)
    (result,), nbytes, seconds = _timed(
        [tensor], lambda inputs: [hvd.alltoall(inputs[0], splits=splits, name=name)[0]]
    )
    return result, nbytes, seconds


def timed_mean(tensors: Sequence[tf.Tensor], name: str) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    results, nbytes, seconds = timed_sum(tensors, name)
    scale = 1.0 / hvd.size()
    return [r * tf.cast(scale, r.dtype) for r in results], nbytes, seconds


def timed_gather(tensors: Sequence[tf.Tensor], name: str) -> tuple[list[tf.Tensor], int, tf.Tensor]:
    """Every rank's copy of each tensor, stacked by rank (shape [size, *shape]), from one
    allgather of this rank's tensors flattened together: (results, payload bytes, seconds)."""
    tensors = list(tensors)
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1:
        raise ValueError(f"timed_gather needs one dtype; received {sorted(d.name for d in dtypes)}")
    start = tf.timestamp()
    with tf.control_dependencies([start]):
        flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)[None, :]
    gathered = flat if hvd.size() == 1 else hvd.allgather(flat, name=name)
    with tf.control_dependencies([gathered]):
        seconds = tf.timestamp() - start
    sizes = [t.shape.num_elements() for t in tensors]
    parts = tf.split(gathered, sizes, axis=1)
    results = [tf.reshape(p, [-1, *t.shape]) for p, t in zip(parts, tensors)]
    return results, _payload_bytes(tensors), seconds


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
