"""Asynchronous EASGD, EAMSGD and the DOWNPOUR family under real horovodrun, in the fixed
round-robin order, against the NumPy transcription of the paper's Algorithms 1 and 2."""

from __future__ import annotations

import math

import pytest

from tests.support import relative_error as _relative
from tests.support import worker_results
from tests.training import reference_async
from tests.training.async_worker import ALL
from training.center.client import shard_bounds
from training.center.codes import wire_bytes

pytestmark = pytest.mark.horovod
RTOL = 1e-5


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}rank")
def results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("async") / "results.npz"
    meta, data = worker_results(request.param, "tests/training/async_worker.py", out)
    return request.param, meta, data


@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_deterministic_order_matches_algorithm_1(results, label):
    """One center server, or the center in parts on several ranks' servers (the authors' mpiT
    layout): the same replay."""
    workers, meta, data = results
    case = meta["cases"][label]
    expected = reference_async.run(
        case["exchange"],
        workers,
        case["steps"],
        meta["lr"],
        case["tau"],
        beta=case["beta"],
        inner=case["inner"],
        momentum=case["momentum"],
        average_rate=meta["average_rate"],
        compression=case["compression"],
        shards=_shards(label, workers) if "shards" in label else 1,
    )
    kernels, slots = data[f"{label}/workers"], data[f"{label}/velocities"]
    delta = case["momentum"] if case["inner"] == "nesterov" else 0.0
    assert _relative(kernels - delta * slots, expected["workers"]) < RTOL
    if case["inner"] == "nesterov":
        assert _relative(slots, expected["velocities"]) < RTOL
    assert _relative(data[f"{label}/evaluated"], expected["evaluated"]) < RTOL
    # Workers that exchanged differ from one another, so the test can tell them apart.
    assert _relative(expected["workers"][1], expected["workers"][0]) > 1e-3


@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_every_worker_exchanges_on_its_schedule_and_counts_its_bytes(results, label):
    workers, meta, _ = results
    case = meta["cases"][label]
    steps, tau = case["steps"], case["tau"]
    # Elastic: on steps t with tau | t; DOWNPOUR: after every tau steps.
    expected = math.ceil(steps / tau) if case["exchange"] == "elastic" else steps // tau
    assert case["exchanges"] == [expected] * workers
    # One model (5 float32 weights) up per exchange: e, or the accumulated update; compressed,
    # its codes and scales (each shard's own).
    shards = [(0, 5)] if "shards" not in label else shard_bounds(5, _shards(label, workers))
    one = sum(wire_bytes(hi - lo, case["compression"]) for lo, hi in shards)
    assert case["bytes_sent"] == [expected * float(one)] * workers


def _shards(label: str, workers: int) -> int:
    count = label.rsplit("shards-", 1)[1]
    return workers if count == "all" else int(count)
