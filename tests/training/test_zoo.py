"""The dataset and model registries: the schema, the form and the loaders all read them, so a
dataset or a model registered from outside is accepted, shown and trained like a built-in one."""

from __future__ import annotations

import numpy as np
import pytest

from training.schema import (
    ConfigError,
    DataConfig,
    DatasetEntry,
    ExperimentConfig,
    ModelConfig,
    ModelEntry,
    parse_config,
    register_dataset,
    register_model,
    visible_fields,
)
from training.schema.zoo import DATASETS, MODELS, ZooError, resolve

CALLS: list[str] = []


def load_blobs(config: DataConfig):
    """A toy loader: two well separated blobs of 3 features."""
    from training.zoo.data import Dataset

    CALLS.append(f"loader {config.dataset} {config.synthetic_samples}")
    rng = np.random.default_rng(config.split_seed)
    y = np.arange(config.synthetic_samples) % 2
    x = (rng.normal(size=(len(y), 3)) + 4.0 * y[:, None]).astype("float32")
    return Dataset(x[10:], y[10:], x[:10], y[:10], 2)


def linear(cfg: ModelConfig, input_shape, classes):
    import keras

    CALLS.append(f"builder {cfg.name} {cfg.width}")
    return keras.Sequential(
        [keras.Input(input_shape), keras.layers.Dense(cfg.width), keras.layers.Dense(classes)]
    )


def hinge_loss(y_true, logits):
    import keras

    CALLS.append("loss")
    signs = 2.0 * keras.ops.cast(y_true, "float32") - 1.0
    return keras.ops.mean(keras.ops.relu(1.0 - signs * (logits[:, 1] - logits[:, 0])))


def second_logit_accuracy(y_true, logits):
    return (logits[:, 1] > logits[:, 0]) == (y_true == 1)


TOY_DATA = {"data": {"dataset": "toy_blobs", "synthetic_samples": 60}}
TOY_MODEL = {"model": {"name": "toy_linear", "width": 4}}


@pytest.fixture
def toys():
    """A toy dataset and model registered for one test, through the public functions."""
    data = register_dataset(
        DatasetEntry(
            "toy_blobs",
            "Two blobs.",
            f"{__name__}:load_blobs",
            fields=("synthetic_samples",),
        )
    )
    model = register_model(
        ModelEntry(
            "toy_linear",
            "Two dense layers.",
            f"{__name__}:linear",
            fields=("width",),
            loss=f"{__name__}:hinge_loss",
            accuracy=f"{__name__}:second_logit_accuracy",
        )
    )
    CALLS.clear()
    yield data, model
    DATASETS.unregister("toy_blobs")
    MODELS.unregister("toy_linear")


def test_a_registered_dataset_and_model_are_accepted_shown_and_loaded(toys):
    from training.zoo import data, models
    from ui import form

    cfg = parse_config({**TOY_DATA, **TOY_MODEL})
    assert (cfg.data.dataset, cfg.model.name) == ("toy_blobs", "toy_linear")
    # The choices end with the new names, after the built-in ones, in the order registered.
    specs = form.field_specs()
    assert specs["data.dataset"].choices[-1] == "toy_blobs"
    assert specs["model.name"].choices[-1] == "toy_linear"
    schema = ExperimentConfig.model_json_schema()["$defs"]
    assert schema["DataConfig"]["properties"]["dataset"]["enum"][-1] == "toy_blobs"
    shown = visible_fields({**TOY_DATA, **TOY_MODEL})
    assert {"data.synthetic_samples", "model.width"} <= shown
    assert not {"data.path", "model.hidden"} & shown

    ds = data.load(cfg.data)
    model = models.build(cfg.model, ds.input_shape, ds.num_classes)
    loss_fn, accuracy_fn = models.loss_and_accuracy(cfg.model)
    assert CALLS == ["loader toy_blobs 60", "builder toy_linear 4"]
    assert model.layers[0].units == 4 and model.output_shape == (None, 2)
    logits = model(ds.x_test, training=False)
    loss = float(loss_fn(ds.y_test, logits))
    assert CALLS[-1] == "loss" and np.isfinite(loss) and loss >= 0.0
    scores = accuracy_fn(ds.y_test, np.asarray(logits))
    assert scores.shape == (10,) and scores.dtype == bool


def test_an_unregistered_name_is_refused_again(toys):
    DATASETS.unregister("toy_blobs")
    try:
        with pytest.raises(ConfigError, match=r"data.dataset: input should be .* or 'cifar10'"):
            parse_config(TOY_DATA)
    finally:
        register_dataset(toys[0])
    assert parse_config(TOY_DATA).data.dataset == "toy_blobs"


def test_the_choices_and_their_messages_are_those_of_the_registries():
    assert list(DATASETS) == [
        "mnist5k",
        "digits",
        "synthetic",
        "npz",
        "mnist",
        "fashion_mnist",
        "cifar10",
    ]
    assert list(MODELS) == ["mlp", "lenet5", "convnet", "resnet"]
    with pytest.raises(ConfigError) as exc:
        parse_config({"data": {"dataset": "imagenet"}, "model": {"name": ["mlp"]}})
    assert exc.value.problems == [
        "data.dataset: input should be 'mnist5k', 'digits', 'synthetic', 'npz', 'mnist', "
        "'fashion_mnist' or 'cifar10' (received: 'imagenet')",
        "model.name: input should be 'mlp', 'lenet5', 'convnet' or 'resnet' (received: [\"mlp\"])",
    ]
    props = ExperimentConfig.model_json_schema()["$defs"]["ModelConfig"]["properties"]
    assert props["name"]["enum"] == list(MODELS) and props["name"]["default"] == "lenet5"


def test_every_entry_names_fields_of_its_section():
    for entry in DATASETS.values():
        assert set(entry.fields) <= set(DataConfig.model_fields), entry.name
        assert entry.description
    for entry in MODELS.values():
        assert set(entry.fields) <= set(ModelConfig.model_fields), entry.name
        assert entry.description


def test_a_dataset_that_needs_a_path_says_so():
    register_dataset(DatasetEntry("toy_file", "A file.", f"{__name__}:load_blobs", ("path",), True))
    try:
        with pytest.raises(ConfigError) as exc:
            parse_config({"data": {"dataset": "toy_file"}})
        assert exc.value.problems == [
            "data.path: required when data.dataset is 'toy_file' (received null)"
        ]
    finally:
        DATASETS.unregister("toy_file")


@pytest.mark.parametrize(
    "entry, phrase",
    [
        (lambda: DatasetEntry("mnist5k", "Again.", "a.b:c"), "'mnist5k' is registered already"),
        (lambda: DatasetEntry("Bad Name", "x", "a.b:c"), "lower case letters"),
        (lambda: DatasetEntry("toy", "x", "training/zoo/data.py"), "loader: expected an import"),
        (lambda: DatasetEntry("toy", "x", "a.b:c", fields="path"), "fields is a tuple"),
        (lambda: DatasetEntry("toy", "x", "a.b:c", path_required=True), "list it in fields"),
    ],
)
def test_a_bad_dataset_registration_is_refused_with_one_line(entry, phrase):
    with pytest.raises(ValueError, match=phrase) as exc:
        register_dataset(entry())
    assert "\n" not in str(exc.value) and "toy" not in DATASETS


@pytest.mark.parametrize(
    "entry, phrase",
    [
        (lambda: ModelEntry("lenet5", "Again.", "a.b:c"), "'lenet5' is registered already"),
        (lambda: ModelEntry("toy", "x", "a.b:c", loss="mse"), "loss: expected an import path"),
        (lambda: ModelEntry("toy", "x", "a.b:c", accuracy="f1"), "accuracy: expected an import"),
    ],
)
def test_a_bad_model_registration_is_refused_with_one_line(entry, phrase):
    with pytest.raises(ValueError, match=phrase) as exc:
        register_model(entry())
    assert "\n" not in str(exc.value) and "toy" not in MODELS


def test_an_import_path_that_names_nothing_is_one_clear_line():
    with pytest.raises(ZooError) as exc:
        resolve("training.zoo.nowhere:load", "data.dataset")
    assert str(exc.value).startswith("data.dataset: cannot import 'training.zoo.nowhere:load'")


def test_the_builtin_loss_and_accuracy_are_the_classification_ones_bit_for_bit():
    """What the trainer computed before the registry: Keras' sparse cross-entropy from logits,
    and the count of examples whose highest logit is the label."""
    import keras

    from training.zoo import models

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)).astype("float32")
    y = rng.integers(0, 10, 500)
    for name in MODELS:
        loss_fn, accuracy_fn = models.loss_and_accuracy(ModelConfig(name=name))
        expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
        assert float(loss_fn(y, logits).numpy()) == float(expected.numpy())
        # and the formula itself: the mean of log sum_j e^(z_j) - z_y, independent of Keras
        shifted = logits - logits.max(axis=1, keepdims=True)
        nll = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(500), y]
        assert float(loss_fn(y, logits).numpy()) == pytest.approx(float(nll.mean()), rel=1e-6)
        correct = int((np.argmax(logits, axis=1) == y).sum())
        assert float(np.sum(accuracy_fn(y, logits))) / 500 == correct / 500
