"""Your own model, data, loss and metrics by import path: the schema's refusals, what the
training program makes of them, and the check the job service runs before it queues a job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.support import ROOT
from training.schema import ConfigError, parse_config
from training.zoo import data, models

EXAMPLE = ROOT / "examples" / "own-model"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": {"builder": "nets:regressor"}}, "model.loss: required with model.builder"),
        ({"model": {"options": {"hidden": 3}}}, "model.options: keyword arguments of model"),
        ({"data": {"options": {"n": 3}}}, "data.options: keyword arguments of data.loader"),
        ({"model": {"builder": "nets regressor", "loss": "mse"}}, "model.builder: an import"),
        ({"model": {"builder": "a:b", "loss": "Mean Squared"}}, "model.loss: a Keras name"),
        ({"model": {"builder": "a:b", "loss": "mse", "options": {"x-y": 1}}}, "keyword argum"),
        ({"model": {"builder": "a:b", "loss": "mse", "options": {"x": 1e400}}}, "finite"),
    ],
)
def test_the_schema_refuses_in_one_line(config, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(config)
    assert len(exc.value.problems) == 1 and message in exc.value.problems[0], exc.value.problems


def test_a_regression_model_and_its_data_by_import_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    cfg = parse_config(
        {
            "data": {"loader": "tables:diabetes", "options": {"test_fraction": 0.25}},
            "model": {
                "builder": "nets:regressor",
                "options": {"hidden": 8, "depth": 1},
                "loss": "mean_squared_error",
                "metrics": ["mean_absolute_error", "mse"],
            },
        }
    )
    ds = data.load(cfg.data)
    assert (len(ds.x_train), len(ds.x_test), ds.num_classes) == (332, 110, 0)
    assert ds.y_train.dtype == np.float32 and ds.input_shape == (10,)
    model = models.build(cfg.model, ds.input_shape, ds.num_classes)
    assert model.count_params() == 10 * 8 + 8 + 8 + 1
    loss, scores = models.loss_and_scores(cfg.model)
    assert sorted(scores) == ["mean_absolute_error", "mse"]
    predicted = np.asarray(model(ds.x_test, training=False))
    errors = predicted[:, 0] - ds.y_test
    # Transcribed: MSE and MAE of the predictions, against Keras' loss and per-example scores.
    assert float(loss(ds.y_test, predicted)) == pytest.approx(np.mean(errors**2), rel=1e-5)
    mae = np.asarray(scores["mean_absolute_error"](ds.y_test, predicted))
    assert mae.shape == (110,) and np.allclose(mae, np.abs(errors), rtol=1e-5)


def _check(tmp_path, config: dict, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "mine.py").write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-m", "training.zoo.check"],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""},
        timeout=120,
    )


LOADER = """
import numpy as np
def load(n=40):
    x = np.random.default_rng(0).normal(size=(n, 3)).astype("float32")
    return (x, x.sum(axis=1)), (x[:8], x[:8].sum(axis=1))
"""


@pytest.mark.parametrize(
    ("model", "code", "message"),
    [
        (
            {"builder": "mine:build", "loss": "mse"},
            "def build(input_shape):\n    return [1, 2]\n",
            "model.builder: mine:build returned a list, not a keras.Model",
        ),
        (
            {"builder": "mine:build", "loss": "mse", "options": {"units": 3}},
            "import keras\ndef build(input_shape):\n    return keras.Sequential()\n",
            "model.builder: mine:build(input_shape) does not take these options",
        ),
        (
            {"builder": "nowhere:build", "loss": "mse"},
            "",
            "model.builder: cannot import 'nowhere:build'",
        ),
        (
            {"builder": "mine:build", "loss": "mse"},
            "def build(input_shape):\n    raise ValueError('no such layer')\n",
            "model.builder: ValueError: no such layer",
        ),
        (
            {"builder": "mine:build", "loss": "no_such_loss"},
            "import keras\ndef build(input_shape):\n"
            "    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(1)])\n",
            "model.loss: Keras has no 'no_such_loss'",
        ),
    ],
)
def test_the_check_refuses_a_broken_builder_in_one_line(tmp_path, model, code, message):
    done = _check_with_loader(tmp_path, model, code)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def _check_with_loader(tmp_path, model: dict, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "loader.py").write_text(LOADER)
    return _check(tmp_path, {"data": {"loader": "loader:load"}, "model": model}, code)


def test_the_check_refuses_a_loader_that_returns_the_wrong_thing(tmp_path):
    done = _check(
        tmp_path,
        {"data": {"loader": "mine:load"}, "model": {"builder": "mine:build", "loss": "mse"}},
        "def load():\n    return {'x': [1, 2]}\n",
    )
    assert done.returncode == 2
    assert done.stdout.strip().startswith(
        "data.loader: mine:load returned a dict without x_train, y_train, x_test and y_test"
    ), done.stdout


def test_the_check_passes_the_example_and_says_what_it_found():
    config = (EXAMPLE / "diabetes.yaml").read_text()
    import yaml

    done = subprocess.run(
        [sys.executable, "-m", "training.zoo.check"],
        input=json.dumps(yaml.safe_load(config)),
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 354 training and 88 held-out examples of shape (10,)")


PER_RANK = """
import numpy as np
import tensorflow as tf


def load(rank, workers, n=300):
    \"\"\"Each rank's own data, of another size on each (300, 250), as a tf.data dataset.\"\"\"
    rng = np.random.default_rng(rank)
    x = rng.normal(size=(n - 50 * rank, 3)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    return train, (x[:40], y[:40])


def build(input_shape, num_classes):
    import keras

    return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(num_classes)])
"""


@pytest.mark.horovod
def test_a_loader_given_the_rank_feeds_each_rank_its_own_data(tmp_path, store):
    """Shards of two sizes from a tf.data dataset: both ranks count their steps from the smaller
    (ranks that disagree on the number of steps would wait for each other forever)."""
    from tests.support import horovodrun

    (tmp_path / "per_rank.py").write_text(PER_RANK)
    config = tmp_path / "own.yaml"
    config.write_text(
        "data: {loader: per_rank:load, batch_size: 25}\n"
        "model: {builder: per_rank:build, loss: training.zoo.models:SparseCrossentropyFromLogits}\n"
        "optimizer: {algorithm: easgd, learning_rate: 0.5, tau: 2}\n"
        "training: {epochs: 2, eval_every: 5}\n"
        "checkpoint: {every: null}\n"
    )
    done = horovodrun(2, ["-m", "training", "--config", str(config)], cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (listed,) = store.list_runs()
    run = store.get_run(listed.id)
    assert (run.status, run.last_step) == ("finished", 2 * (250 // 25))
    assert run.metrics["center_accuracy"].value > 0.6
