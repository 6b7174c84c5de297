"""The reference step: the same model, batch and inner optimizer as a benchmark run, but a plain
Keras optimizer with no wrapper and no communication, on every rank at once (so the ranks
compete for the cores exactly as in training); and, alternating with it in the same process,
the wrapper's own non-communication step, which isolates what the wrapper costs.

    horovodrun -np 2 -H localhost:2 --gloo python -m bench.plain_step CONFIG.yaml OUT.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(config_path: str, out: str, steps: int = 150, warmup: int = 10) -> None:
    import keras
    import tensorflow as tf

    from training.exchanges import collectives
    from training.exchanges.optimizer import ElasticAveragingOptimizer, build_inner
    from training.schema import resolve
    from training.schema.algorithms import WITH_MOMENTUM
    from training.zoo import data, models

    cfg = resolve(config_path)
    collectives.init()
    rank, size = collectives.rank(), collectives.size()
    keras.utils.set_random_seed(cfg.seed)
    ds = data.load(cfg.data, cfg.seed)
    shard = data.Shard(ds.x_train, ds.y_train, rank, size, cfg.data.batch_size, cfg.seed)
    opt_cfg = cfg.optimizer
    kind = opt_cfg.resolved_inner.value
    momentum = opt_cfg.resolved_momentum if kind in WITH_MOMENTUM else 0.0
    loss_fn, _ = models.loss_and_accuracy(cfg.model)
    batch = min(cfg.data.batch_size, len(shard.x))
    spec = [tf.TensorSpec((batch, *ds.input_shape), tf.float32), tf.TensorSpec((batch,), tf.int64)]

    def make_step(opt):
        model = models.build(cfg.model, ds.input_shape, ds.num_classes)

        @tf.function(input_signature=spec)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss

        return step

    # A/B in one process, alternating, so both see the same machine: the plain inner optimizer,
    # and the same one inside the wrapper with a period it never reaches (its
    # non-communication step; the first step's exchange falls in the warm-up).
    plain = make_step(build_inner(kind, opt_cfg.learning_rate, momentum))
    wrapped = make_step(
        ElasticAveragingOptimizer(build_inner(kind, opt_cfg.learning_rate, momentum), tau=10**9)
    )
    times: dict[str, list[float]] = {"plain": [], "wrapped": []}
    for i in range(warmup + steps):
        order = (("plain", plain), ("wrapped", wrapped))
        for name, step in order if i % 2 else order[::-1]:
            x, y = shard.batch_at(i)
            t0 = time.perf_counter()
            float(step(x, y).numpy())
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    means = {k: collectives.allgather_object(statistics.mean(v)) for k, v in times.items()}
    medians = {k: collectives.allgather_object(statistics.median(v)) for k, v in times.items()}
    if rank == 0:
        with open(out, "w") as f:
            json.dump(
                {
                    "mean_step_seconds": statistics.mean(means["plain"]),
                    "wrapped_mean_step_seconds": statistics.mean(means["wrapped"]),
                    "median_step_seconds": statistics.mean(medians["plain"]),
                    "wrapped_median_step_seconds": statistics.mean(medians["wrapped"]),
                    "per_rank": means,
                    "per_rank_median": medians,
                    "steps": steps,
                    "inner": kind,
                },
                f,
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
