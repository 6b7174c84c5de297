"""LARS against hand-computed updates from You, Gitman & Ginsburg 2017, Algorithm 1:

    lambda = eta ||w|| / (||g|| + beta ||w||);  v <- m v + gamma lambda (g + beta w);  w <- w - v

The expected numbers are worked out in the comments (chosen so that the norms come out round),
never from the implementation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.exchanges.lars import LARS

GAMMA, M, ETA, BETA = 0.1, 0.9, 0.5, 0.1


def _pair():
    kernel = keras.Variable(np.array([[3.0, 0.0], [0.0, 4.0]], "float32"), name="kernel")
    bias = keras.Variable(np.array([1.0, -1.0], "float32"), name="bias")
    return kernel, bias


GRADS = [np.array([[0.6, 0.0], [0.0, 0.8]], "float32"), np.array([0.5, 0.5], "float32")]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_two_steps_by_hand(graph):
    kernel, bias = _pair()
    opt = LARS(GAMMA, momentum=M, eta=ETA, weight_decay_rate=BETA)
    opt.build([kernel, bias])
    apply = tf.function(lambda: opt.apply(GRADS, [kernel, bias])) if graph else None

    def step():
        apply() if graph else opt.apply(GRADS, [kernel, bias])

    # Step 1, kernel: ||w|| = 5, ||g|| = 1, lambda = 0.5 * 5 / (1 + 0.1 * 5) = 5/3;
    # g + beta w = diag(0.9, 1.2); v = 0.1 * 5/3 * diag(0.9, 1.2) = diag(0.15, 0.2);
    # w = diag(2.85, 3.8).
    # Bias (1-D: no trust ratio, no weight decay): v = 0.1 * 0.5 = 0.05; b = (0.95, -1.05).
    step()
    np.testing.assert_allclose(kernel.numpy(), [[2.85, 0.0], [0.0, 3.8]], rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), [0.95, -1.05], rtol=1e-6)
    # Step 2, kernel: ||w|| = sqrt(2.85^2 + 3.8^2) = 4.75, lambda = 0.5 * 4.75 / 1.475;
    # g + beta w = diag(0.885, 1.18) = 1.475 * diag(0.6, 0.8), so
    # gamma lambda (g + beta w) = 0.1 * 2.375 * diag(0.6, 0.8) = diag(0.1425, 0.19);
    # v = 0.9 * diag(0.15, 0.2) + diag(0.1425, 0.19) = diag(0.2775, 0.37);
    # w = diag(2.85 - 0.2775, 3.8 - 0.37) = diag(2.5725, 3.43).
    # Bias: v = 0.9 * 0.05 + 0.05 = 0.095; b = (0.855, -1.145).
    step()
    np.testing.assert_allclose(kernel.numpy(), [[2.5725, 0.0], [0.0, 3.43]], rtol=1e-6)
    np.testing.assert_allclose(bias.numpy(), [0.855, -1.145], rtol=1e-6)
    # The momentum slots, in the order of the variables.
    np.testing.assert_allclose(opt.momentums[0].numpy(), [[0.2775, 0.0], [0.0, 0.37]], rtol=1e-6)
    np.testing.assert_allclose(opt.momentums[1].numpy(), [0.095, 0.095], rtol=1e-6)


def test_one_dimensional_variables_adapted_when_asked():
    _, bias = _pair()
    opt = LARS(GAMMA, momentum=M, eta=ETA, weight_decay_rate=BETA, exclude_1d=False)
    opt.apply([GRADS[1]], [bias])
    # ||w|| = sqrt(2), ||g|| = sqrt(0.5) = sqrt(2) / 2, beta ||w|| = 0.1 sqrt(2):
    # lambda = 0.5 sqrt(2) / (0.6 sqrt(2)) = 5/6; g + beta w = (0.6, 0.4);
    # v = 0.1 * 5/6 * (0.6, 0.4) = (0.05, 1/30); b = (0.95, -1 - 1/30).
    np.testing.assert_allclose(bias.numpy(), [0.95, -1.0 - 1.0 / 30.0], rtol=1e-6)


def test_a_zero_norm_gives_ratio_one():
    zero = keras.Variable(np.zeros((2, 2), "float32"))
    still = keras.Variable(np.array([[3.0, 0.0], [0.0, 4.0]], "float32"))
    opt = LARS(GAMMA, momentum=0.0, eta=ETA, weight_decay_rate=BETA)
    opt.apply([np.full((2, 2), 2.0, "float32"), np.zeros((2, 2), "float32")], [zero, still])
    # ||w|| = 0: lambda = 1, v = 0.1 * (2 + 0.1 * 0) = 0.2 everywhere.
    np.testing.assert_allclose(zero.numpy(), np.full((2, 2), -0.2), rtol=1e-6)
    # ||g|| = 0: lambda = 1, v = 0.1 * 0.1 * w = 0.01 w (weight decay alone).
    np.testing.assert_allclose(still.numpy(), [[2.97, 0.0], [0.0, 3.96]], rtol=1e-6)
    assert np.all(np.isfinite(zero.numpy())) and np.all(np.isfinite(still.numpy()))


def test_without_weight_decay_the_step_has_length_gamma_eta_norm_w():
    """beta = 0 and no momentum: ||w_1 - w_0|| = gamma eta ||w_0||, whatever ||g|| is."""
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5, 3)).astype("float32")
    for scale in (1e-3, 1.0, 1e3):
        w = keras.Variable(w0)
        LARS(0.2, momentum=0.0, eta=0.01).apply([scale * rng.normal(size=(5, 3))], [w])
        step = np.linalg.norm(w.numpy() - w0)
        assert step == pytest.approx(0.2 * 0.01 * np.linalg.norm(w0), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"momentum": float("nan")}, "momentum must be a finite number"),
        ({"eta": 0.0}, "eta must be > 0"),
        ({"eta": float("inf")}, "eta must be a finite number"),
        ({"weight_decay_rate": -0.1}, "weight_decay_rate must be in"),
        ({"weight_decay_rate": True}, "weight_decay_rate must be a finite number"),
    ],
)
def test_bad_arguments_are_refused(kwargs, phrase):
    with pytest.raises(ValueError, match=phrase):
        LARS(0.1, **kwargs)


def test_config_round_trip():
    opt = LARS(0.3, momentum=0.8, eta=0.02, weight_decay_rate=5e-4, exclude_1d=False)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, LARS)
    assert (again.momentum, again.eta, again.weight_decay_rate, again.exclude_1d) == (
        0.8,
        0.02,
        5e-4,
        False,
    )
    assert again.weight_decay is None  # Keras' decoupled decay stays off
