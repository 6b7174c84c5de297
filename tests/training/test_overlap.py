"""Overlapped rounds: what `model.fit` needs to carry them and what happens without it (one
process, Horovod with one rank), and the training program on 2 ranks with checkpoints inside a
round's flight. Their arithmetic at 1, 2 and 3 ranks is held to the NumPy reference in
test_equations.py."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from training.exchanges.optimizer import ElasticAveragingOptimizer, OverlapCallback, build_inner


def _fit(opt, callbacks, epochs=5):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 3)).astype("float32")
    b = (a @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")]
    )
    model.compile(optimizer=opt, loss="mse", jit_compile=False)
    model.fit(a, b, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return model


def _eamsgd(overlap_steps=1):
    inner = build_inner("nesterov", 0.05, 0.9)
    return ElasticAveragingOptimizer(inner, tau=2, exchange="elastic", overlap_steps=overlap_steps)


def test_fit_carries_overlapped_rounds_with_the_callback():
    opt = _eamsgd()
    model = _fit(opt, [OverlapCallback(opt)])
    # Rounds at t = 0, 2, 4: all three flew and landed (the last when training ended).
    assert opt.communication()["rounds"] == 3
    assert opt.communication()["bytes_sent"] == 3 * 3 * 4
    assert int(opt.exchanger.flight.in_air.numpy()) == 0
    center = opt.center[0].numpy()
    assert not np.array_equal(center, model.layers[0].kernel.numpy())
    exact = _eamsgd(0)
    exact_model = _fit(exact, [])
    np.testing.assert_allclose(center, exact.center[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        model.layers[0].kernel.numpy(), exact_model.layers[0].kernel.numpy(), rtol=1e-6
    )


def test_fit_without_the_callback_says_what_is_missing():
    opt = _eamsgd()
    with pytest.raises(Exception, match=r"add OverlapCallback\(optimizer\) to callbacks") as caught:
        _fit(opt, [])
    assert "overlap_steps: a round started while the last one was still in flight" in str(
        caught.value
    )


def test_the_callback_refuses_several_steps_per_call():
    opt = _eamsgd()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=opt, loss="mse", jit_compile=False, steps_per_execution=4)
    a = np.zeros((16, 3), "float32")
    with pytest.raises(ValueError, match="compile with steps_per_execution=1 or use overlap_st"):
        model.fit(a, a[:, :1], batch_size=4, verbose=0, callbacks=[OverlapCallback(opt)])


def test_the_callback_refuses_an_optimizer_without_overlap():
    with pytest.raises(ValueError, match="overlap_steps >= 1. Received: overlap_steps=0"):
        OverlapCallback(_eamsgd(0))


@pytest.mark.horovod
def test_the_program_overlaps_elastic_rounds_and_lands_them_at_checkpoints(tmp_path, easgd_home):
    """`python -m training` on 2 ranks with checkpoints on steps inside a round's flight (every 5
    steps, tau 3, d 2): every round lands, the checkpoints hold landed state, and the center is
    the exact form's, as elastic averaging's arithmetic says."""
    import json

    from tests.support import horovodrun
    from training.run.metrics import read_jsonl

    tiny = str(Path(__file__).with_name("tiny.yaml"))
    centers = {}
    for d in (0, 2):
        out = tmp_path / f"d{d}"
        proc = horovodrun(
            2,
            ["-m", "training", "--config", tiny, "--out", str(out), "--no-store"]
            + ["--set", "optimizer.tau=3", "--set", f"optimizer.overlap_steps={d}"]
            + ["--set", "training.max_steps=20", "--set", "checkpoint.every=5"],
            timeout=400,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        rows = read_jsonl(out / "metrics.jsonl")
        assert rows[-1]["step"] == 20
        # Rounds at t = 0, 3, ..., 18: 7 of them, each one model of 2,410 float32 values.
        assert rows[-1]["bytes_sent"] == 7 * 4 * (64 * 32 + 32 + 32 * 10 + 10)
        saved = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert saved and json.loads((out / "checkpoints" / saved[-1] / "meta.json").read_text())
        centers[d] = keras.models.load_model(out / "center.keras").get_weights()
    for exact, late in zip(centers[0], centers[2]):
        np.testing.assert_allclose(late, exact, rtol=1e-5, atol=1e-7)
