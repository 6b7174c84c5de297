"""A user's own Keras script, as Horovod users write one, tracked with `training.tracking`.

Usage: tracked_fit.py DATA.npz [--epochs N] [--fail-at-step S] [--sleep-per-step SECONDS]
                      [--checkpoint-every STEPS]
"""

import argparse
import time

import horovod.tensorflow.keras as hvd
import keras
import numpy as np

from training import eamsgd, tracking

parser = argparse.ArgumentParser()
parser.add_argument("data")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--fail-at-step", type=int, default=0)
parser.add_argument("--sleep-per-step", type=float, default=0.0)
parser.add_argument("--checkpoint-every", type=int, default=200)
args = parser.parse_args()

hvd.init()
keras.utils.set_random_seed(1)
with np.load(args.data) as f:
    x, y, x_test, y_test = f["x"], f["y"], f["x_test"], f["y_test"]
x, y = x[hvd.rank() :: hvd.size()], y[hvd.rank() :: hvd.size()]

model = keras.Sequential(
    [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
)
model.compile(
    optimizer=eamsgd(0.01, tau=4, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)


class Trouble(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(args.sleep_per_step)
        if args.fail_at_step and self.model.optimizer.iterations.numpy() >= args.fail_at_step:
            raise RuntimeError(f"bad batch at step {args.fail_at_step}")


with tracking.start_run(name="tracked-fit", params={"hidden": 32, "epochs": args.epochs}):
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=args.epochs,
        verbose=0,
        callbacks=[
            Trouble(),
            # Held-out data on rank 0 alone, as Horovod scripts often evaluate.
            tracking.KerasCallback(
                validation_data=(x_test, y_test) if hvd.rank() == 0 else None,
                eval_every=10,
                checkpoint_every=args.checkpoint_every,
            ),
        ],
    )
    tracking.set_tags({"data": "digits"})
