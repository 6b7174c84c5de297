"""`training.tracking`: a user's own script recorded in the store, under real horovodrun, and
the API's refusals of bad input, one line each."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from db.store import Store
from tests.support import QUIET_TF, ROOT, horovodrun
from training import tracking
from training.launch.argv import horovodrun_argv

SCRIPT = str(ROOT / "tests" / "training" / "tracked_fit.py")


@pytest.fixture
def digits(tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    path = tmp_path / "digits.npz"
    np.savez(path, x=x[:1400], y=y[:1400], x_test=x[1400:], y_test=y[1400:])
    return path


def _only_run(store: Store):
    (run,) = store.list_runs()
    return store.get_run(run.id)


@pytest.mark.horovod
def test_a_keras_script_under_horovodrun_lands_in_the_store(digits, easgd_home):
    proc = horovodrun(2, [SCRIPT, str(digits), "--epochs", "3"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    store = Store()
    run = _only_run(store)
    assert (run.status, run.source, run.name, run.workers) == (
        "finished",
        "shell",
        "tracked-fit",
        2,
    )
    assert run.params["hidden"] == "32" and run.params["epochs"] == "3"
    assert run.params["optimizer.class"] == "ElasticAveragingOptimizer"
    assert run.params["optimizer.tau"] == "4"
    assert run.tags["data"] == "digits"
    steps = 3 * math.ceil(700 / 32)  # each rank holds half of the 1,400 training examples
    loss = store.metric_history(run.id, "train_loss")
    assert [p.step for p in loss] == list(range(1, steps + 1))
    sent = [p.value for p in store.metric_history(run.id, "bytes_sent")]
    assert sent[0] == 0 < sent[1] and sent == sorted(sent)  # EAMSGD exchanges every 4 steps
    center = store.metric_history(run.id, "center_accuracy")
    assert center[0].step == 0 and center[-1].step == steps
    # Every evaluation carries the counters Compare reads where a target is first reached.
    for key in ("bytes_sent", "train_seconds"):
        at = {p.step: p.value for p in store.metric_history(run.id, key)}
        assert all(p.step in at for p in center), key
    seconds = [p.value for p in store.metric_history(run.id, "train_seconds")]
    assert seconds[0] == 0 and seconds == sorted(seconds) and seconds[-1] > 0
    assert center[-1].value > 0.5 > center[0].value, [p.value for p in center]
    cpu = store.metric_history(run.id, "system/rank_1/cpu_percent")
    assert cpu and all(p.value >= 0 for p in cpu)
    assert [e.kind for e in store.events(run.id)][:: len(store.events(run.id)) - 1] == [
        "started",
        "finished",
    ]
    import keras

    exported = keras.models.load_model(easgd_home / "runs" / run.id / "center.keras")
    assert exported.count_params() == 64 * 32 + 32 + 32 * 10 + 10


@pytest.mark.horovod
def test_a_script_that_raises_is_recorded_failed_with_its_error(digits, easgd_home):
    proc = horovodrun(2, [SCRIPT, str(digits), "--fail-at-step", "5"])
    assert proc.returncode != 0
    run = _only_run(Store())
    assert run.status == "failed"
    assert run.error == "RuntimeError: bad batch at step 5", run.error


@pytest.mark.horovod
def test_a_failed_script_resumed_continues_from_its_checkpoint(digits, easgd_home):
    argv = [SCRIPT, str(digits), "--epochs", "3", "--checkpoint-every", "10"]
    failed = horovodrun(2, [*argv, "--fail-at-step", "25"])
    assert failed.returncode != 0
    store = Store()
    run = _only_run(store)
    assert run.status == "failed" and run.last_step == 24  # step 25 raised before its row
    # As the job service relaunches a job: the same run id, asked to resume.
    resumed = horovodrun(2, argv, env={"EASGD_RUN_ID": run.id, "EASGD_RESUME": "1"})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    run = _only_run(store)
    steps = 3 * math.ceil(700 / 32)
    assert (run.status, run.last_step) == ("finished", steps)
    assert [p.step for p in store.metric_history(run.id, "train_loss")] == list(range(1, steps + 1))
    kinds = [(e.kind, e.step) for e in store.events(run.id)]
    assert ("resumed", 20) in kinds and ("checkpointed", steps) in kinds, kinds
    assert store.metric_history(run.id, "center_accuracy")[-1].value > 0.3  # chance: 0.1


@pytest.mark.horovod
def test_sigterm_closes_the_run_as_cancelled(digits, easgd_home):
    argv = horovodrun_argv(
        2,
        [sys.executable, SCRIPT, str(digits), "--epochs", "200", "--sleep-per-step", "0.05"],
        pin_loopback=False,
    )
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **QUIET_TF},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    store = Store()
    store.init()  # polled before the script opens it
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            runs = store.list_runs()
            if runs and store.get_run(runs[0].id).last_step >= 5:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the script did not start training")
        os.killpg(proc.pid, signal.SIGTERM)  # as the job service stops a job
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run = _only_run(store)
    assert run.status == "cancelled" and run.error == "stopped by SIGTERM", (run.status, run.error)


@pytest.fixture
def active(easgd_home):
    run = tracking.start_run(name="api", params={"lr": 0.1})
    yield run
    run.end()


def test_metrics_params_and_tags_reach_the_store(active):
    active.log_metrics({"loss": 1.5, "score": float("nan")})
    tracking.log_metrics({"loss": 1.0}, step=7)
    active.log_metrics({"loss": 0.5})  # the step after the last
    tracking.log_params({"batch": 64, "lr": 0.1})  # the same value again is no change
    tracking.set_tags({"team": "vision"})
    active.end()
    store = Store()
    run = store.get_run(active.run_id)
    assert run.status == "finished" and run.source == "shell"
    assert [(p.step, p.value) for p in store.metric_history(run.id, "loss")] == [
        (0, 1.5),
        (7, 1.0),
        (8, 0.5),
    ]
    assert [p.value for p in store.metric_history(run.id, "score")] == [None]
    assert run.params["lr"] == "0.1" and run.params["batch"] == "64"
    assert run.tags == {"team": "vision"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.log_metrics({"loss": "low"}), "metric 'loss': a number (received: str 'low')"),
        (lambda r: r.log_metrics({"loss": True}), "metric 'loss': a number (received: bool True)"),
        (lambda r: r.log_metrics([1.0]), "metrics: a dict of name to number"),
        (lambda r: r.log_metrics({"loss": 1.0}, step=-1), "step: an integer from 0 to 2**53"),
        (lambda r: r.log_metrics({"loss": 1.0}, step=2**60), "step: an integer from 0 to 2**53"),
        (lambda r: r.log_metrics({"a\x00b": 1.0}), "metric key"),
        (lambda r: r.log_params({"lr": 0.2}), "param 'lr': the run recorded '0.1'"),
        (lambda r: r.set_tags("x"), "tags: a dict (received: str)"),
        (lambda r: tracking.start_run(), "is still open"),
        (lambda r: r.end("exploded"), "status: finished, failed or cancelled"),
    ],
)
def test_bad_input_is_refused_in_one_line(active, call, message):
    with pytest.raises(tracking.TrackingError) as caught:
        call(active)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_exception_in_the_block_fails_the_run(easgd_home):
    with pytest.raises(ZeroDivisionError), tracking.start_run() as run:
        run.log_metrics({"loss": 1.0})
        1 / 0  # noqa: B018
    stored = Store().get_run(run.run_id)
    assert stored.status == "failed" and stored.error == "ZeroDivisionError: division by zero"
    with pytest.raises(tracking.TrackingError, match="has ended"):
        run.log_metrics({"loss": 1.0})


def test_other_ranks_record_nothing(easgd_home, monkeypatch):
    monkeypatch.setenv("HOROVOD_RANK", "1")
    with tracking.start_run(name="rank-1") as run:
        run.log_metrics({"loss": 1.0})
        assert not run.recording
    assert not (easgd_home / "runs").exists()
    assert not (easgd_home / "easgd.db").exists()


def test_a_refused_start_leaves_no_run_open_and_a_run_id_is_not_reused(easgd_home):
    with pytest.raises(tracking.TrackingError, match="param key"):
        tracking.start_run(params={"": 1})
    assert tracking.active_run() is None
    with tracking.start_run(run_id="mine") as run:
        run.log_metrics({"loss": 1.0})
    with pytest.raises(tracking.TrackingError, match="already holds a run"):
        tracking.start_run(run_id="mine")
    assert Store().get_run("mine").status == "finished"


@pytest.mark.horovod
def test_fit_ending_on_an_evaluation_step_records_every_row_once(easgd_home):
    """eval_every divides the last step: the end's evaluation is not logged a second time (the
    store refuses a repeated row, and the rows after the last flush were lost)."""
    x, y, model = _tiny_model()
    callback = tracking.KerasCallback(validation_data=(x, y), eval_every=10, name="ends-on-eval")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[callback])
    store = Store()
    run = _only_run(store)
    assert (run.status, run.last_step) == ("finished", 20)
    assert [p.step for p in store.metric_history(run.id, "train_loss")] == list(range(1, 21))
    assert [p.step for p in store.metric_history(run.id, "center_accuracy")] == [0, 10, 20]
    assert [(e.kind, e.step) for e in store.events(run.id)][-2:] == [
        ("checkpointed", 20),
        ("finished", 20),
    ]


@pytest.mark.horovod
def test_two_fits_in_one_run_each_run_all_their_steps(easgd_home):
    """The stop at the planned last step is a resumed fit's only: a second fit goes on."""
    x, y, model = _tiny_model()
    with tracking.start_run(name="two-fits"):
        for _ in range(2):
            callback = tracking.KerasCallback(checkpoint_every=None)
            model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    store = Store()
    run = _only_run(store)
    assert [p.step for p in store.metric_history(run.id, "train_loss")] == list(range(1, 21))


def _tiny_model():
    """320 examples of a linearly separable problem, and a one-layer model with EASGD (10 steps
    an epoch in batches of 32), trained in this process (Horovod of one rank)."""
    import keras

    from training import easgd

    x = np.random.default_rng(0).normal(size=(320, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(
        optimizer=easgd(0.1, tau=2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return x, y, model
