"""Your own data, loaded by name from a configuration's data.loader: each function returns
((x_train, y_train), (x_test, y_test)), as keras.datasets do."""

import numpy as np
from sklearn import datasets


def _split(x, y, test_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * test_fraction)
    test, train = order[:cut], order[cut:]
    return (x[train], y[train]), (x[test], y[test])


def diabetes(test_fraction=0.2, seed=0):
    """scikit-learn's diabetes progression: 442 patients, 10 features, a real-valued target,
    both standardized."""
    x, y = datasets.load_diabetes(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = (y - y.mean()) / y.std()
    return _split(x.astype("float32"), y.astype("float32"), test_fraction, seed)


def digits(test_fraction=0.2, seed=0):
    """scikit-learn's 8x8 digits, as flat vectors of 64 values in [0, 1]."""
    x, y = datasets.load_digits(return_X_y=True)
    return _split((x / 16.0).astype("float32"), y, test_fraction, seed)
