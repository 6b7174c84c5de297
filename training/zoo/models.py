"""The model zoo: an MLP, LeNet-5, a small CIFAR-style convnet and a small ResNet."""

from __future__ import annotations

import keras
from keras import layers

from training.schema import ModelConfig


def _mlp(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    stack = [keras.Input(input_shape), layers.Flatten()]
    stack += [layers.Dense(w, activation="relu") for w in cfg.hidden]
    stack += [layers.Dense(classes)]
    return keras.Sequential(stack, name="mlp")


def _lenet5(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    shape = input_shape if len(input_shape) == 3 else (*input_shape, 1)
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


def _convnet(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    w = cfg.width
    return keras.Sequential(
        [
            keras.Input(input_shape),
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


def _resnet(cfg: ModelConfig, input_shape, classes) -> keras.Model:
    inputs = keras.Input(input_shape)
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


_BUILDERS = {"mlp": _mlp, "lenet5": _lenet5, "convnet": _convnet, "resnet": _resnet}


def build(cfg: ModelConfig, input_shape: tuple[int, ...], classes: int) -> keras.Model:
    if cfg.name != "mlp" and len(input_shape) != 3:
        raise ValueError(
            f"model.name: {cfg.name!r} needs images, and this dataset has flat inputs of shape "
            f"{input_shape}; use model.name: mlp"
        )
    return _BUILDERS[cfg.name](cfg, input_shape, classes)
