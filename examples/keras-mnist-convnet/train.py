"""A simple convnet on MNIST in the shape of keras.io's "Simple MNIST convnet" example
(https://keras.io/examples/vision/mnist_convnet/): the data are read from a local mnist.npz
(keras.datasets' own file), and the lines marked `# easgd` are what it takes to train it with
EAMSGD under horovodrun, tracked in the run store, checkpointed and resumable.

    horovodrun -np 2 -H localhost:2 python train.py --data mnist.npz --epochs 2
"""

import argparse

import horovod.tensorflow.keras as hvd  # easgd
import keras
import numpy as np
from keras import layers

from training import eamsgd, tracking  # easgd

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default="mnist.npz", help="keras.datasets' mnist.npz")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--lr", type=float, default=0.01)
args = parser.parse_args()
hvd.init()  # easgd

# The model's input and output
num_classes = 10
input_shape = (28, 28, 1)

# The data, as keras.datasets.mnist.load_data() reads its file
with np.load(args.data) as f:
    x_train, y_train = f["x_train"], f["y_train"]
    x_test, y_test = f["x_test"], f["y_test"]
n = len(x_train) // hvd.size()  # easgd: a shard per rank, all of one size (one step count)
shard = slice(hvd.rank() * n, (hvd.rank() + 1) * n)  # easgd
x_train, y_train = x_train[shard], y_train[shard]  # easgd

# Pixels to [0, 1], one channel, labels one-hot
x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)
print(x_train.shape[0], "train samples on this rank,", x_test.shape[0], "test samples")

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)

model.compile(
    loss="categorical_crossentropy",
    optimizer=eamsgd(args.lr, tau=4, momentum=0.9),  # easgd: instead of "adam"
    metrics=["accuracy"],
)
model.fit(
    x_train,
    y_train,
    batch_size=args.batch_size,
    epochs=args.epochs,
    validation_split=0.1,
    callbacks=[tracking.KerasCallback(validation_data=(x_test, y_test), eval_every=20)],  # easgd
)

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
