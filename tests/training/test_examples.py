"""The examples the tutorials walk through, run as the tutorials run them: under plain
`horovodrun -np 2`, each recorded in the store (the job service's way in is in
tests/service/test_script_jobs.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from db.store import Store
from tests.support import ROOT, horovodrun

CONVNET = ROOT / "examples" / "keras-mnist-convnet"
CUSTOM_LOOP = ROOT / "examples" / "custom-loop"

pytestmark = pytest.mark.horovod


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    subprocess.run([sys.executable, str(CONVNET / "make_data.py"), str(path)], check=True)
    return path


def _only_run(store: Store):
    (run,) = store.list_runs()
    return store.get_run(run.id)


def test_the_keras_example_trains_with_eamsgd_and_is_recorded(mnist, easgd_home):
    done = horovodrun(2, [str(CONVNET / "train.py"), "--data", str(mnist), "--epochs", "2"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store()
    run = _only_run(store)
    assert (run.status, run.workers, run.last_step) == ("finished", 2, 2 * 15)
    assert run.params["optimizer.algorithm"] == "eamsgd" and run.params["optimizer.tau"] == "4"
    assert [p.step for p in store.metric_history(run.id, "train_loss")] == list(range(1, 31))
    center = store.metric_history(run.id, "center_accuracy")
    assert [p.step for p in center] == [0, 20, 30] and center[-1].value > 0.3  # chance: 0.1
    assert store.metric_history(run.id, "bytes_sent")[-1].value > 0
    assert store.metric_history(run.id, "system/rank_1/memory_mb")
    assert "Test accuracy:" in done.stdout


def test_the_custom_loop_example_is_recorded(mnist, easgd_home):
    done = horovodrun(2, [str(CUSTOM_LOOP / "train.py"), "--data", str(mnist)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store()
    run = _only_run(store)
    steps = 2 * (2000 // 64)
    assert (run.status, run.name, run.last_step) == ("finished", "custom-loop", steps)
    assert run.params["optimizer.algorithm"] == "easgd" and run.params["epochs"] == "2"
    assert len(store.metric_history(run.id, "train_loss")) == steps
    held_out = store.metric_history(run.id, "worker_accuracy")
    assert [p.step for p in held_out] == [steps // 2, steps] and held_out[-1].value > 0.5
