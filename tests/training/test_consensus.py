"""CDSGD and CDMSGD: the optimizer's workers under real horovodrun (3 and 4 ranks) against the
NumPy transcription of the paper, and the topologies the schema and the optimizer refuse."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from service.submission import prepare
from tests.support import QUIET_TF, ROOT, worker_results
from tests.support import relative_error as _relative
from tests.training import reference_consensus as ref
from tests.training.consensus_worker import ALL
from training.exchanges.compression import wire_bytes
from training.schema import ConfigError, parse_config, topology, warnings_for
from training.schema.algorithms import REGISTRY

TOLERANCE = 1e-5
THIRD = 1 / 3


@pytest.fixture(scope="module", params=[3, 4], ids=lambda n: f"{n}rank")
def results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("consensus") / "results.npz"
    meta, data = worker_results(request.param, "tests/training/consensus_worker.py", out, 500)
    return request.param, meta, data


@pytest.mark.horovod
@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_every_worker_matches_the_paper(results, label):
    workers, meta, data = results
    case = meta["cases"][label]
    assert meta["workers"] == workers and case["iterations"] == case["steps"]
    pi = ref.mixing(case["topology"], workers)
    expected = ref.run(pi, case["steps"], meta["lr"], case["momentum"], case["compression"])
    got = data[f"{label}/workers"]
    assert got.shape == expected["workers"].shape == (workers, ref.DIM)
    assert _relative(got, expected["workers"]) < TOLERANCE
    # The workers did not agree already: the mixing, not a shortcut, is what matched.
    assert ref.consensus_distance(expected["workers"]) > 1e-6
    # Every rank evaluates the same mean, the workers' own, and has no center.
    for mean in data[f"{label}/means"]:
        assert _relative(mean, expected["mean"]) < TOLERANCE
    assert not case["has_center"]


@pytest.mark.horovod
@pytest.mark.parametrize("label", [c[0] for c in ALL])
def test_bytes_per_round(results, label):
    """One round a step. An all-gather when some worker mixes with every other (rank 0's
    payload: 6 float32 weights), otherwise an all-to-all of one copy per worker that mixes
    rank 0's weights; computing the evaluated mean is not counted."""
    workers, meta, _ = results
    case = meta["cases"][label]
    pi = ref.mixing(case["topology"], workers)
    takers = [(pi[:, j] > 0).sum() - 1 for j in range(workers)]
    copies = 1 if max(takers) == workers - 1 else takers[0]
    assert case["rounds"] == case["steps"]
    one = wire_bytes(ref.DIM, case["compression"])
    assert case["bytes_sent"] == case["steps"] * copies * one
    assert not case["evaluation_counted"]


def test_the_reference_tells_the_topologies_and_the_momentum_apart():
    """Guard against a reference that would agree with anything."""
    ring, full = ref.mixing("ring", 4), ref.mixing("full", 4)
    assert np.allclose(ring[0], [THIRD, THIRD, 0, THIRD]) and np.allclose(full, 0.25)
    a = ref.run(ring, 8, 0.05)["workers"]
    assert _relative(ref.run(full, 8, 0.05)["workers"], a) > 1e-3
    assert _relative(ref.run(ring, 8, 0.05, momentum=0.5)["workers"], a) > 1e-3
    shift = 0.5 * (np.eye(4) + np.roll(np.eye(4), 1, axis=1))
    b = ref.run(shift, 8, 0.05)["workers"]
    assert _relative(ref.run(shift.T, 8, 0.05)["workers"], b) > 1e-3


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("name", ["ring", "full"])
def test_metropolis_hastings_weights_match_the_reference(name, workers):
    got = np.array(topology.mixing_matrix(name, workers))
    assert np.allclose(got, ref.mixing(name, workers), atol=1e-12)
    assert np.allclose(got.sum(axis=0), 1) and np.allclose(got.sum(axis=1), 1)


def test_a_ring_of_two_or_three_is_the_full_graph():
    for workers in (2, 3):
        assert topology.mixing_matrix("ring", workers) == topology.mixing_matrix("full", workers)
    assert topology.mixing_matrix("ring", 2) == [[0.5, 0.5], [0.5, 0.5]]
    assert topology.mixing_matrix("ring", 1) == [[1.0]]


@pytest.mark.parametrize(
    "value, reason",
    [
        ("star", "should be 'ring', 'full' or a square mixing matrix"),
        (3, "should be 'ring', 'full' or a square mixing matrix"),
        ([], "has no rows"),
        ([[0.5, 0.5]], "row 0 has 2 entries and the matrix 1 rows; a mixing matrix is square"),
        ([[0.5, 0.5], 1], "row 1 has not a list"),
        ([[1.5, -0.5], [-0.5, 1.5]], "entry [0][1] is negative (-0.5)"),
        ([[0.5, ".5"], [0.5, 0.5]], "entry [0][1] is not a number"),
        ([[True, False], [False, True]], "entry [0][0] is not a number"),
        ([[float("nan"), 1], [1, 0]], "entry [0][0] is not finite"),
        ([[10**400, 0], [0, 1]], "entry [0][0] is not finite"),  # past any float
        ([[0.5, 0.4], [0.5, 0.6]], "row 0 sums to 0.9, not 1: a mixing matrix must be doubly"),
        ([[0.5, 0.5], [0.6, 0.4]], "column 0 sums to 1.1, not 1"),
        ([[1.0 / 65] * 65] * 65, "at most 64 rows, this one has 65; use ring or full"),
    ],
)
def test_a_bad_topology_is_refused_with_one_line(value, reason):
    with pytest.raises(ConfigError) as caught:
        parse_config({"optimizer": {"algorithm": "cdsgd", "topology": value}})
    (problem,) = caught.value.problems
    assert problem.startswith("optimizer.topology: ") and reason in problem
    assert "(received: " in problem
    assert caught.value.by_field()[0][0] == "optimizer.topology"


def test_a_matrix_is_accepted_as_floats_and_rounding_within_the_tolerance():
    thirds = [[0.3333333, 0.3333333, 0.3333334]] * 3
    opt = parse_config({"optimizer": {"algorithm": "cdmsgd", "topology": thirds}}).optimizer
    assert opt.topology == thirds and opt.resolved_momentum == 0.95
    assert parse_config({"optimizer": {"topology": [[1]]}}).optimizer.topology == [[1.0]]
    assert parse_config({}).optimizer.topology == "ring"


def test_the_registry_entries():
    for name in ("cdsgd", "cdmsgd"):
        spec = REGISTRY[name]
        assert "topology" in spec.fields and "tau" not in spec.fields
        assert not spec.has_center and spec.evaluated == "mean"
        assert all(spec.communicates(t, 10) for t in range(12))
    assert REGISTRY["cdmsgd"].exchange.arguments["consensus_momentum"] == "momentum"


def test_a_matrix_that_does_not_fit_the_workers_is_a_warning_or_a_refusal():
    half = [[0.5, 0.5], [0.5, 0.5]]
    config = parse_config({"optimizer": {"algorithm": "cdsgd", "topology": half}})
    assert not [w for w in warnings_for(config, 2) if "topology" in w]
    (warning,) = [w for w in warnings_for(config, 3) if "topology" in w]
    assert warning.startswith("optimizer.topology: a 2 x 2 mixing matrix needs 2 workers")
    # The service knows how many ranks a job gets: there it is refused before it is queued.
    with pytest.raises(ConfigError, match=r"optimizer.topology: a 2 x 2 mixing matrix needs 2"):
        prepare({"optimizer": {"algorithm": "cdsgd", "topology": half}}, workers=3)
    assert prepare({"optimizer": {"algorithm": "cdsgd", "topology": half}}, workers=2)
    # An algorithm without a topology ignores the field.
    assert prepare({"optimizer": {"algorithm": "easgd", "topology": half}}, workers=3)
    apart = parse_config({"optimizer": {"algorithm": "cdsgd", "topology": [[1, 0], [0, 1]]}})
    assert any("not connected" in w for w in warnings_for(apart, 2))


@pytest.mark.horovod
def test_the_training_program_refuses_a_matrix_of_the_wrong_size(tmp_path):
    """One rank and a 2 x 2 matrix: refused before TensorFlow starts, on one line naming the
    field, like any bad configuration (exit 2), and nothing is written."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "--config",
            "configs/lenet-mnist5k-eamsgd.yaml",
            "--set",
            "optimizer.algorithm=cdsgd",
            "--set",
            "optimizer.topology=[[0.5, 0.5], [0.5, 0.5]]",
            "--set",
            "data.dataset=digits",
            "--set",
            "model.name=mlp",
            "--out",
            str(tmp_path / "run"),
            "--no-store",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **QUIET_TF, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        "easgd: invalid configuration: optimizer.topology: a 2 x 2 mixing matrix needs 2 workers, "
        "and this job has 1; run it with 2 workers, or use ring or full"
    ) in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
