"""Your own Keras models, built by name from a configuration's model.builder."""

import keras


def regressor(input_shape, hidden=64, depth=2):
    """A multilayer perceptron with one linear output: a regression model."""
    inputs = keras.Input(input_shape)
    x = inputs
    for _ in range(depth):
        x = keras.layers.Dense(hidden, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def classifier(input_shape, num_classes, width=32, dropout=0.0):
    """A multilayer perceptron ending in logits, one per class."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_classes),
        ]
    )
