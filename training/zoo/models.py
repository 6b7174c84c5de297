"""The model zoo: an MLP, LeNet-5, a small CIFAR-style convnet and a small ResNet, each
registered in `training.schema.zoo` with its loss and accuracy, and those two."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers

from training.schema import ModelConfig
from training.schema.zoo import MODELS, resolve
from training.zoo import user_code


def mlp(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    stack = [keras.Input(input_shape), layers.Flatten()]
    stack += [layers.Dense(w, activation="relu") for w in cfg.hidden]
    stack += [layers.Dense(classes)]
    return keras.Sequential(stack, name="mlp")


def lenet5(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    shape = _images(cfg, input_shape)
    return keras.Sequential(
        [
            keras.Input(shape),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, padding="valid" if shape[0] >= 14 else "same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(classes),
        ],
        name="lenet5",
    )


def convnet(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    w = cfg.width
    return keras.Sequential(
        [
            keras.Input(_images(cfg, input_shape)),
            layers.Conv2D(w * 4, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.Conv2D(w * 8, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(classes),
        ],
        name="convnet",
    )


def resnet(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    inputs = keras.Input(_images(cfg, input_shape))
    x = layers.Conv2D(cfg.width, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for stage, filters in enumerate((cfg.width, cfg.width * 2, cfg.width * 4)):
        strides = 1 if stage == 0 else 2
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        if strides != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
        x = layers.Activation("relu")(layers.add([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="resnet")


def _images(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(input_shape) != 3:
        raise ValueError(
            f"model.name: {cfg.name!r} needs images, and this dataset has flat inputs of shape "
            f"{input_shape}; use model.name: mlp"
        )
    return input_shape


class SparseCrossentropyFromLogits(keras.losses.SparseCategoricalCrossentropy):
    """The zoo's loss: every model here ends in a Dense layer without softmax."""

    def __init__(self) -> None:
        super().__init__(from_logits=True)


def argmax_accuracy(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Whether each example's highest logit is its label."""
    return np.argmax(logits, axis=1) == y_true


def build(cfg: ModelConfig, input_shape: tuple[int, ...], classes: int) -> keras.Model:
    """The model's registered builder, or the user's `model.builder`, imported now (the schema
    names them by import path)."""
    if cfg.builder is not None:
        return user_code.build_model(cfg.builder, cfg.options, input_shape, classes)
    return resolve(MODELS[cfg.name].builder, "model.name")(cfg, input_shape, classes)


def loss_and_accuracy(cfg: ModelConfig) -> tuple[Callable, Callable]:
    """The built-in model's loss (a batch's mean) and accuracy (a score per example)."""
    entry = MODELS[cfg.name]
    found = [resolve(entry.loss_path, "loss"), resolve(entry.accuracy_path, "accuracy")]
    loss, accuracy = (f() if isinstance(f, type) else f for f in found)
    return loss, accuracy


def loss_and_scores(cfg: ModelConfig) -> tuple[Callable, dict[str, Callable]]:
    """The loss, and the held-out scores by name (each one value per example): `model.loss`
    and `model.metrics` where given, else the built-in model's loss and accuracy."""
    loss, accuracy = (None, None) if cfg.builder else loss_and_accuracy(cfg)
    if cfg.loss is not None:
        loss = user_code.loss(cfg.loss)
    if cfg.metrics:
        return loss, {user_code.metric_name(m): user_code.metric(m) for m in cfg.metrics}
    return loss, {"accuracy": accuracy or user_code.metric("accuracy")}
