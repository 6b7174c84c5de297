"""Every algorithm, run under real horovodrun with 1, 2 and 3 ranks, against the NumPy reference.

EASGD_TEST_RANKS=1,2,3,4 runs it with other numbers of ranks (4 needs no more than this machine).
"""

from __future__ import annotations

import inspect
import json
import os

import numpy as np
import pytest

from tests.support import horovodrun
from tests.training import reference
from tests.training.equations_worker import ALL, REGISTRY_CASES
from training.exchanges.compression import wire_bytes

pytestmark = pytest.mark.horovod
RTOL = 1e-5
LABELS = [c[0] for c in ALL]
RANKS = [int(n) for n in os.environ.get("EASGD_TEST_RANKS", "1,2,3").split(",")]


@pytest.fixture(scope="module", params=RANKS, ids=lambda n: f"{n}rank")
def results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("eq") / "results.npz"
    proc = horovodrun(request.param, ["tests/training/equations_worker.py", str(out)], timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = np.load(out)
    return request.param, json.loads(str(data["meta"])), data


def _relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _reference(workers: int, meta: dict, case: dict, **arguments) -> dict:
    """The NumPy transcription's run of `case`, with its inner step and these arguments."""
    return reference.run(
        case["exchange"],
        workers,
        case["steps"],
        meta["lr"],
        inner=case["inner"],
        momentum=case["momentum"],
        **arguments,
    )


@pytest.mark.parametrize("label", LABELS)
def test_matches_reference(results, label):
    """Every case, compressed exchanges (error feedback) and DiLoCo's outer step included."""
    workers, meta, data = results
    case = meta["cases"][label]
    assert meta["workers"] == workers
    assert case["steps"] >= 3 * case["tau"]
    expected = _reference(
        workers,
        meta,
        case,
        tau=case["tau"],
        beta=case["beta"],
        center_momentum=meta["center_momentum"],
        average_rate=meta["average_rate"],
        order=case["order"],
        compression=case["compression"],
        overlap=case["overlap"],
    )
    assert case["iterations"] == case["steps"]
    _assert_matches(data, label, case, expected, meta["center_momentum"])


@pytest.mark.parametrize("compression", ["none", "int4"])
def test_an_overlapped_elastic_round_is_the_papers(compression):
    """The center is read only at the next round: landing its sum up to tau - 1 steps late
    changes nothing the paper computes. Local SGD and DiLoCo apply their mean late: they move."""
    for d in (1, 2):
        exact = reference.run("elastic", 2, 12, 0.05, tau=3, compression=compression)
        late = reference.run("elastic", 2, 12, 0.05, tau=3, compression=compression, overlap=d)
        for key in ("workers", "center"):
            np.testing.assert_array_equal(exact[key], late[key])
    for algorithm in ("localsgd", "diloco"):
        exact = reference.run(algorithm, 2, 12, 0.05, tau=3)
        late = reference.run(algorithm, 2, 12, 0.05, tau=3, overlap=2)
        assert np.max(np.abs(exact["center"] - late["center"])) > 1e-4


def test_compression_in_the_reference_changes_the_trajectory():
    """Guard: int4 with error feedback differs from the exact exchange, and less than without
    it would (the residual is delivered later, not lost)."""
    exact = reference.run("elastic", 2, 12, 0.05, tau=2)
    int4 = reference.run("elastic", 2, 12, 0.05, tau=2, compression="int4")
    assert 1e-4 < _relative(int4["center"], exact["center"]) < 0.2
    v = np.array([0.3, -0.05, 0.012, 0.9])
    assert np.allclose(reference.quantize(v, "int4"), np.array([2, 0, 0, 7]) * 0.9 / 7)


@pytest.mark.parametrize("name", REGISTRY_CASES)
def test_each_algorithm_as_configured_matches_reference(results, name):
    """The optimizer the training program builds from a configuration, with the algorithm's
    defaults and the fields its exchange declares, against the reference given the same."""
    workers, meta, data = results
    label = f"registry/{name}"
    case = meta["cases"][label]
    taken = inspect.signature(reference.run).parameters
    given = {k: v for k, v in case["arguments"].items() if k in taken and v is not None}
    expected = _reference(workers, meta, case, **given)
    _assert_matches(data, label, case, expected, given.get("center_momentum"))


def _assert_matches(data, label: str, case: dict, expected: dict, center_momentum) -> None:
    kernels, slots = data[f"{label}/workers"], data[f"{label}/velocities"]
    assert kernels.shape == expected["workers"].shape
    # Keras' Nesterov SGD holds the look-ahead point y = x + delta v in the variable and v in
    # its momentum slot: the paper's x is y - delta v.
    delta = case["momentum"] if case["inner"] == "nesterov" else 0.0
    assert _relative(kernels - delta * slots, expected["workers"]) < RTOL
    if case["inner"] in ("momentum", "nesterov"):
        assert _relative(slots, expected["velocities"]) < RTOL
    # MDOWNPOUR's center variable is the look-ahead point the master hands out, x~ + delta v.
    center = expected["center"]
    if case["exchange"] == "mdownpour":
        center = center + center_momentum * expected["center_velocity"]
    assert _relative(data[f"{label}/centers"][0], center) < RTOL
    own = case["exchange"] in ("sync", "mvadownpour", "adownpour")
    evaluated = expected["evaluated"] if own else center
    assert _relative(data[f"{label}/evaluated"][0], evaluated) < RTOL


@pytest.mark.parametrize("label", LABELS)
def test_center_replicas_are_bit_identical(results, label):
    workers, _, data = results
    centers = data[f"{label}/centers"]
    for r in range(1, workers):
        assert centers[r].tobytes() == centers[0].tobytes(), f"rank {r} differs from rank 0"


@pytest.mark.parametrize("label", LABELS)
def test_bytes_sent_per_round(results, label):
    """Every round sends the model's payload once: 5 float32 weights = 20 bytes, or its codes
    and their scale."""
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
    assert case["bytes_sent"] == rounds * wire_bytes(reference.DIM, case["compression"])


def test_reference_distinguishes_algorithms():
    """Guard against a reference that would agree with anything."""
    a = reference.run("elastic", 2, 9, 0.05, tau=3, beta=0.9)
    b = reference.run("elastic", 2, 9, 0.05, tau=3, beta=0.5)
    c = reference.run("downpour", 2, 9, 0.05, tau=3)
    assert _relative(a["center"], b["center"]) > 1e-3
    assert _relative(a["center"], c["center"]) > 1e-3
    rr = reference.run("elastic", 3, 9, 0.05, tau=3, beta=0.9, order="round_robin")
    assert _relative(rr["center"], reference.run("elastic", 3, 9, 0.05, tau=3)["center"]) > 1e-3
    mva = reference.run("mvadownpour", 2, 9, 0.05, tau=3, average_rate=0.1)
    ada = reference.run("adownpour", 2, 9, 0.05, tau=3)
    assert _relative(mva["evaluated"], ada["evaluated"]) > 1e-3
    assert _relative(ada["evaluated"], ada["center"]) > 1e-3


def test_time_average_is_the_mean_of_the_centers():
    """ADOWNPOUR's z after k updates is the plain mean of x~_0 .. x~_k, by its definition."""
    centers = [reference.initial_weights()]
    for steps in (3, 6, 9):
        centers.append(reference.run("downpour", 2, steps, 0.05, tau=3)["center"])
    z = reference.run("adownpour", 2, 9, 0.05, tau=3)["evaluated"]
    assert np.allclose(z, np.mean(centers, axis=0), rtol=1e-12)
