"""Every algorithm, run under real horovodrun with 1, 2 and 3 ranks, against the NumPy reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support import horovodrun
from tests.training import reference
from tests.training.equations_worker import CASES

pytestmark = pytest.mark.horovod
RTOL = 1e-5


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda n: f"{n}rank")
def results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("eq") / "results.npz"
    proc = horovodrun(request.param, ["tests/training/equations_worker.py", str(out)], timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = np.load(out)
    return request.param, json.loads(str(data["meta"])), data


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("label", [c[0] for c in CASES])
def test_matches_reference(results, label):
    workers, meta, data = results
    case = meta["cases"][label]
    assert meta["workers"] == workers
    assert case["steps"] >= 3 * case["tau"]
    expected = reference.run(
        case["exchange"],
        workers,
        case["steps"],
        meta["lr"],
        tau=case["tau"],
        beta=case["beta"],
        inner=case["inner"],
        momentum=case["momentum"],
        center_momentum=meta["center_momentum"],
        average_rate=meta["average_rate"],
    )
    assert case["iterations"] == case["steps"]
    got_workers = data[f"{label}/workers"]
    assert got_workers.shape == expected["workers"].shape
    assert _relative(got_workers, expected["workers"]) < RTOL
    assert _relative(data[f"{label}/centers"][0], expected["center"]) < RTOL
    assert _relative(data[f"{label}/evaluated"][0], expected["evaluated"]) < RTOL


@pytest.mark.parametrize("label", [c[0] for c in CASES])
def test_center_replicas_are_bit_identical(results, label):
    workers, _, data = results
    centers = data[f"{label}/centers"]
    for r in range(1, workers):
        assert centers[r].tobytes() == centers[0].tobytes(), f"rank {r} differs from rank 0"


@pytest.mark.parametrize("label", [c[0] for c in CASES])
def test_bytes_sent_per_round(results, label):
    """Every round sends the model's payload once: 5 float32 weights = 20 bytes."""
    _, meta, _ = results
    case = meta["cases"][label]
    steps, tau = case["steps"], case["tau"]
    if case["exchange"] == "sync":
        rounds = steps
    elif case["exchange"] == "elastic":
        rounds = len([t for t in range(steps) if t % tau == 0])
    else:
        rounds = steps // tau
    assert case["rounds"] == rounds
    assert case["bytes_sent"] == rounds * reference.DIM * 4


def test_reference_distinguishes_algorithms():
    """Guard against a reference that would agree with anything."""
    a = reference.run("elastic", 2, 9, 0.05, tau=3, beta=0.9)
    b = reference.run("elastic", 2, 9, 0.05, tau=3, beta=0.5)
    c = reference.run("downpour", 2, 9, 0.05, tau=3)
    assert _relative(a["center"], b["center"]) > 1e-3
    assert _relative(a["center"], c["center"]) > 1e-3
