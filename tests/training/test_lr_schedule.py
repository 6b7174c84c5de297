"""The large-batch learning rate: scale with the workers, linear warm-up from the base rate.

Expected values are written out by hand from eta_t = eta + (k eta - eta) t / W (t < W), k eta
after, with k = 1, p or sqrt(p) (Goyal et al. 2017, section 2.2)."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.support import QUIET_TF, ROOT
from training.exchanges.lars import LARS
from training.exchanges.lr_schedule import ScaledWarmup, scaled_learning_rate
from training.schema.lr_scaling import lr_scale


@pytest.mark.parametrize(
    "scaling, workers, warmup, expected",
    [
        # base 0.1, 4 workers, warm-up over 4 steps: +0.075 a step to 0.4
        ("linear", 4, 4, {0: 0.1, 1: 0.175, 2: 0.25, 3: 0.325, 4: 0.4, 5: 0.4, 1000: 0.4}),
        # sqrt(4) = 2: +0.025 a step to 0.2
        ("sqrt", 4, 4, {0: 0.1, 1: 0.125, 2: 0.15, 3: 0.175, 4: 0.2, 9: 0.2}),
        # no scaling: the warm-up goes from 0.1 to 0.1
        ("none", 4, 4, {0: 0.1, 2: 0.1, 4: 0.1, 50: 0.1}),
        # no warm-up: the scaled rate from the first step
        ("linear", 4, 0, {0: 0.4, 1: 0.4, 100: 0.4}),
        ("sqrt", 9, 0, {0: 0.3, 7: 0.3}),
        # 2 workers (the horovodrun test's case), 5 steps: 0.1, 0.12, ..., 0.2
        ("linear", 2, 5, {0: 0.1, 1: 0.12, 2: 0.14, 3: 0.16, 4: 0.18, 5: 0.2, 6: 0.2}),
        # sqrt(2) = 1.41421356...: halfway through 10 steps, 0.1 + 0.0414213562 / 2
        ("sqrt", 2, 10, {0: 0.1, 5: 0.12071067812, 10: 0.14142135624}),
        # one worker: every scaling is 1
        ("linear", 1, 3, {0: 0.1, 3: 0.1}),
    ],
)
def test_schedule_values(scaling, workers, warmup, expected):
    schedule = ScaledWarmup(0.1, scaling, workers, warmup)
    for step, value in expected.items():
        got = float(schedule(np.int64(step)))
        assert got == pytest.approx(value, rel=1e-6), (step, got)


def test_scale_factors():
    assert lr_scale("none", 8) == 1.0
    assert lr_scale("linear", 8) == 8.0
    assert lr_scale("sqrt", 16) == 4.0
    with pytest.raises(ValueError, match="lr_scaling must be one of"):
        lr_scale("quadratic", 2)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        lr_scale("linear", 0)


@pytest.mark.parametrize(
    "args, phrase",
    [
        ((0.0,), "finite and > 0"),
        ((float("nan"),), "finite and > 0"),
        (("0.1",), "must be a number"),
        ((0.1, "cubic", 2), "lr_scaling must be one of"),
        ((0.1, "linear", 2, -1), "warmup_steps must be an integer >= 0"),
        ((0.1, "linear", True), "workers must be an integer"),
    ],
)
def test_bad_arguments_are_refused(args, phrase):
    with pytest.raises((TypeError, ValueError), match=phrase):
        ScaledWarmup(*args)


def test_the_default_configuration_keeps_a_plain_rate():
    assert scaled_learning_rate(0.05, "none", 4, 0) == 0.05
    assert isinstance(scaled_learning_rate(0.05, "none", 4, 10), ScaledWarmup)
    assert scaled_learning_rate(0.05, "linear", 4, 0).target == pytest.approx(0.2)


def test_the_optimizer_follows_its_own_iterations():
    """The rate comes from the optimizer's step counter: what a checkpoint restores."""
    opt = keras.optimizers.SGD(ScaledWarmup(0.1, "linear", 2, 5))
    w = keras.Variable(np.zeros(3, "float32"))
    seen = []
    for _ in range(7):
        seen.append(float(opt.learning_rate))
        opt.apply([np.ones(3, "float32")], [w])
    assert seen == pytest.approx([0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.2], rel=1e-6)
    # SGD: w = -(sum of the rates) after 7 steps of gradient 1.
    np.testing.assert_allclose(w.numpy(), -sum(seen), rtol=1e-6)
    # A restored counter resumes the ramp where it was.
    fresh = keras.optimizers.SGD(ScaledWarmup(0.1, "linear", 2, 5))
    fresh.build([w])
    fresh.iterations.assign(3)
    assert float(fresh.learning_rate) == pytest.approx(0.16, rel=1e-6)


def test_serialization_round_trip():
    schedule = ScaledWarmup(0.02, "sqrt", 4, 7)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(again, ScaledWarmup) and again.get_config() == schedule.get_config()
    assert float(again(3)) == pytest.approx(0.02 + (0.04 - 0.02) * 3 / 7, rel=1e-6)


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    """A model compiled with LARS on the schedule, saved here, loads in a process that has
    imported only training.exchanges.optimizer (what registers every optimizer of ours)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    opt = LARS(ScaledWarmup(0.5, "linear", 2, 3), momentum=0.9, eta=0.01, weight_decay_rate=1e-4)
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, x[:, :3], batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    code = (
        "import json, sys, keras, training.exchanges.optimizer; "
        "m = keras.models.load_model(sys.argv[1]); o = m.optimizer; "
        "print(json.dumps({'cls': type(o).__name__, 'eta': o.eta, 'wd': o.weight_decay_rate, "
        "'lr': float(o.learning_rate), 'it': int(o.iterations.numpy()), "
        "'w': [w.tolist() for w in m.get_weights()]}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**QUIET_TF, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["cls"] == "LARS" and got["eta"] == 0.01 and got["wd"] == 1e-4
    assert got["it"] == 4 and got["lr"] == pytest.approx(1.0, rel=1e-6)  # past the warm-up
    for a, b in zip(model.get_weights(), got["w"]):
        np.testing.assert_array_equal(a, np.asarray(b, "float32"))
