"""The reference problem as a Keras model, for the workers that run under horovodrun: one
Dense kernel, each rank its own least-squares data (tests/training/reference.py)."""

from __future__ import annotations

import json

import keras
import numpy as np
import reference
import tensorflow as tf

from training.exchanges import collectives


def model_and_data():
    """This rank's model, started from weights that differ on every rank but 0 (the optimizer's
    broadcast must fix that), its data (a, b), and a `tf.function` step for `opt`."""
    rank = collectives.rank()
    a, b = reference.problem(rank)
    x0 = reference.initial_weights() if rank == 0 else np.full((reference.DIM, 1), 9.0)
    model = keras.Sequential([keras.Input((reference.DIM,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].kernel.assign(x0.astype("float32"))
    return model, a, b


def stepper(model, opt, a, b):
    xa, yb = tf.constant(a, tf.float32), tf.constant(b, tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_mean(tf.square(model(xa) - yb))
        opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return step


def fit(model, opt, a, b, steps: int, lr: float, callbacks=()) -> None:
    """`model.fit` on the whole shard for `steps` epochs; keras' mean squared error is
    mean((y - p)^2), twice our loss, so the rate is halved."""
    opt.learning_rate = lr / 2
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    model.fit(
        a, b, batch_size=len(a), epochs=steps, shuffle=False, verbose=0, callbacks=list(callbacks)
    )


def slots_of(opt, like: np.ndarray) -> np.ndarray:
    """The inner optimizer's momentum slot as Keras keeps it (zeros when it has none)."""
    slots = getattr(opt.inner_optimizer, "momentums", [])
    return slots[0].numpy() if slots else np.zeros_like(like)


def save_results(out: str, results: dict, cases: dict, **meta) -> None:
    """Rank 0 writes the arrays and, as the JSON entry `meta`, the cases and the run's figures
    (worker count, rates) for the test to rebuild its reference from."""
    if collectives.rank() == 0:
        meta = {"cases": cases, "workers": collectives.size(), **meta}
        np.savez(out, **results, meta=np.array(json.dumps(meta)))
