"""A custom training loop (tf.GradientTape), in the shape of Keras' guide "Writing a training
loop from scratch", trained with EASGD under horovodrun and tracked in the run store: the lines
marked `# easgd` are what it takes.

    horovodrun -np 2 -H localhost:2 python train.py --data ../keras-mnist-convnet/mnist.npz
"""

import argparse

import horovod.tensorflow as hvd  # easgd
import keras
import numpy as np
import tensorflow as tf

from training import easgd, tracking  # easgd

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default="mnist.npz", help="keras.datasets' mnist.npz")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()
hvd.init()  # easgd

with np.load(args.data) as f:
    x_train, y_train = f["x_train"], f["y_train"]
    x_test, y_test = f["x_test"], f["y_test"]
x_train = x_train.reshape(-1, 784).astype("float32") / 255
x_test = x_test.reshape(-1, 784).astype("float32") / 255
n = len(x_train) // hvd.size()  # easgd: a shard per rank, all of one size (one step count)
shard = slice(hvd.rank() * n, (hvd.rank() + 1) * n)  # easgd
x_train, y_train = x_train[shard], y_train[shard]  # easgd
train_dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train))
train_dataset = train_dataset.shuffle(1024, seed=hvd.rank()).batch(
    args.batch_size,
    drop_remainder=True,  # the same number of steps on every rank
)

inputs = keras.Input(shape=(784,))
x = keras.layers.Dense(64, activation="relu")(inputs)
x = keras.layers.Dense(64, activation="relu")(x)
outputs = keras.layers.Dense(10)(x)
model = keras.Model(inputs, outputs)

optimizer = easgd(args.lr, tau=4)  # easgd: instead of keras.optimizers.SGD(args.lr)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
train_acc_metric = keras.metrics.SparseCategoricalAccuracy()
val_acc_metric = keras.metrics.SparseCategoricalAccuracy()


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss_value = loss_fn(y, logits)
    grads = tape.gradient(loss_value, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    train_acc_metric.update_state(y, logits)
    return loss_value


with tracking.start_run(name="custom-loop", params=vars(args)) as run:  # easgd
    run.log_params(tracking.optimizer_params(optimizer))  # easgd
    step = 0
    for epoch in range(args.epochs):
        for x_batch, y_batch in train_dataset:
            loss_value = train_step(x_batch, y_batch)
            step += 1
            sent = optimizer.communication()["bytes_sent"]  # easgd
            run.log_metrics(
                {"train_loss": float(loss_value), "bytes_sent": sent}, step=step
            )  # easgd
        val_acc_metric.update_state(y_test, model(x_test, training=False))
        print(
            f"epoch {epoch}: training accuracy {float(train_acc_metric.result()):.4f}, "
            f"held-out accuracy {float(val_acc_metric.result()):.4f}"
        )
        run.log_metrics({"worker_accuracy": float(val_acc_metric.result())}, step=step)  # easgd
        train_acc_metric.reset_state()
        val_acc_metric.reset_state()
