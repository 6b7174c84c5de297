"""A user's own model builder, data loader, loss and metrics, named by import path in the
configuration (`model.builder`, `data.loader`, `model.loss`, `model.metrics`).

Each is imported when training starts, called with the configuration's options, and what it
returns is checked here, so that a mistake is one line naming the field ("model.builder:
mypkg.nets:build returned a list, not a keras.Model") rather than a traceback deep in a step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from db.errors import EasgdError
from training.schema.zoo import IMPORT_PATH, METRICS, resolve


class UserCodeError(EasgdError, ValueError):
    """User code that does not import, does not take its options, or returns the wrong thing."""

    exit_code = 2


def _call(
    path: str, what: str, options: dict[str, Any], offered: dict[str, Any]
) -> tuple[Any, Mapping[str, inspect.Parameter]]:
    """`path(**options)`, plus those of `offered` its signature takes; and the parameters its
    signature names."""
    fn = resolve(path, what)
    if not callable(fn):
        raise UserCodeError(f"{what}: {path} is a {type(fn).__name__}, not a function")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: call it as it is
        return fn(**options), {}
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in offered.items() if (takes_any or k in params) and k not in options}
    try:
        signature.bind(**options, **extra)
    except TypeError as exc:
        section = what.split(".")[0]
        raise UserCodeError(
            f"{what}: {path}{signature} does not take these options ({exc}); change "
            f"{section}.options or the function (received options: {sorted(options) or 'none'})"
        ) from None
    return fn(**options, **extra), params


def build_model(
    path: str, options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> keras.Model:
    model, _ = _call(
        path,
        "model.builder",
        options,
        {"input_shape": input_shape, "num_classes": num_classes},
    )
    if not isinstance(model, keras.Model):
        raise UserCodeError(
            f"model.builder: {path} returned a {type(model).__name__}, not a keras.Model; "
            "return the model itself (uncompiled is fine)"
        )
    if not model.built:
        model.build((None, *input_shape))
    return model


def _array(value: Any, what: str) -> np.ndarray:
    try:
        found = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise UserCodeError(f"data.loader: {what} is not an array ({exc})") from None
    if found.dtype.kind not in "biuf" or found.ndim == 0 or len(found) == 0:
        raise UserCodeError(
            f"data.loader: {what} must be a non-empty array of numbers (received: "
            f"{found.dtype} of shape {found.shape})"
        )
    if found.dtype.kind in "iub":
        return found.astype("int64")
    return found.astype("float32")


def _materialized(value: Any, what: str) -> Any:
    """A tf.data.Dataset of (x, y) batches, as model.fit takes one, read into two arrays."""
    if not hasattr(value, "as_numpy_iterator") or not hasattr(value, "unbatch"):
        return value
    try:
        xs, ys = zip(*value.unbatch().as_numpy_iterator(), strict=True)
    except ValueError:
        raise UserCodeError(
            f"data.loader: the {what} dataset is empty, or its elements are not (x, y) pairs"
        ) from None
    return np.stack(xs), np.stack(ys)


def load_data(
    path: str, options: dict[str, Any], rank: int = 0, workers: int = 1
) -> tuple[tuple[np.ndarray, ...], bool]:
    """((x_train, y_train, x_test, y_test, num_classes), per_rank): targets that are whole
    numbers are classes (num_classes is their count), others are regression targets
    (num_classes 0). A loader that takes `rank` (or `workers`) returns that rank's own
    training data (per_rank), which is then not split again."""
    found, params = _call(path, "data.loader", options, {"rank": rank, "workers": workers})
    per_rank = "rank" in params or "workers" in params
    if isinstance(found, dict):
        keys = ("x_train", "y_train", "x_test", "y_test")
        if not set(keys) <= found.keys():
            raise UserCodeError(
                f"data.loader: {path} returned a dict without x_train, y_train, x_test and "
                f"y_test; return those four, or ((x_train, y_train), (x_test, y_test)) "
                f"(received keys: {sorted(map(str, found))[:10]})"
            )
        found = ((found["x_train"], found["y_train"]), (found["x_test"], found["y_test"]))
    shape_ok = (
        isinstance(found, tuple | list)
        and len(found) == 2
        and all(
            (isinstance(p, tuple | list) and len(p) == 2) or hasattr(p, "as_numpy_iterator")
            for p in found
        )
    )
    if not shape_ok:
        raise UserCodeError(
            f"data.loader: {path} returned a {type(found).__name__}; return "
            "((x_train, y_train), (x_test, y_test)) as arrays, as keras.datasets do (or "
            "tf.data datasets of (x, y) batches in place of either pair)"
        )
    train, test = found
    if not isinstance(train, tuple | list):
        train = _materialized(train, "training")
    if not isinstance(test, tuple | list):
        test = _materialized(test, "held-out")
    (xtr, ytr), (xte, yte) = train, test
    xtr, ytr = _array(xtr, "x_train"), _array(ytr, "y_train")
    xte, yte = _array(xte, "x_test"), _array(yte, "y_test")
    xtr, xte = xtr.astype("float32"), xte.astype("float32")
    for x, y, part in ((xtr, ytr, "train"), (xte, yte, "test")):
        if len(x) != len(y):
            raise UserCodeError(
                f"data.loader: x_{part} has {len(x)} examples and y_{part} {len(y)}; give one "
                "target per example"
            )
    if xtr.shape[1:] != xte.shape[1:]:
        raise UserCodeError(
            f"data.loader: x_train's examples have shape {xtr.shape[1:]} and x_test's "
            f"{xte.shape[1:]}; they must match"
        )
    classes = int(max(ytr.max(), yte.max()) + 1) if ytr.dtype.kind == "i" else 0
    return (xtr, ytr, xte, yte, classes), per_rank


def _named(path: str, what: str, getter: Callable[[str], Any]) -> Any:
    if IMPORT_PATH.fullmatch(path):
        found = resolve(path, what)
    else:
        try:
            found = getter(path)
        except (ValueError, TypeError):
            raise UserCodeError(
                f"{what}: Keras has no {path!r}; give a Keras name (as keras.{what.split('.')[1]}"
                f".get takes it) or an import path (received: {path!r})"
            ) from None
    return found() if isinstance(found, type) else found


def loss(path: str) -> Callable:
    """A batch's mean loss, whether Keras gives a function (one value per example) or a Loss."""
    fn = _named(path, "model.loss", keras.losses.get)
    if isinstance(fn, keras.losses.Loss):
        return fn
    return lambda y_true, y_pred: keras.ops.mean(fn(y_true, y_pred))


def metric_name(path: str) -> str:
    return path.rsplit(":", 1)[-1]


def _per_example(name: str) -> Callable:
    """keras.metrics' function of that name (or of the metric an alias such as mae names):
    Keras' metric objects keep running totals, the trainer needs a value per example."""
    found = keras.metrics.get(name)
    fn = getattr(keras.metrics, getattr(found, "name", name), None)
    if not inspect.isfunction(fn) or fn.__name__ in ("get", "serialize", "deserialize"):
        raise ValueError(name)
    return fn


def metric(path: str) -> Callable:
    """One value per example, averaged by the trainer over the held-out set."""
    if path in METRICS:
        return resolve(METRICS[path], "model.metrics")
    return _named(path, "model.metrics", _per_example)
