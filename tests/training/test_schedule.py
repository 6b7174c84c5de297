"""The optimizer built from each registry entry communicates when the registry (and so the
benchmark) says, keeps a center when it says, and evaluates what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.harness import TAU
from tests.support import QUIET_TF, ROOT
from training.schema.algorithms import EXCHANGES, REGISTRY

pytestmark = pytest.mark.horovod  # Horovod in one plain process (one rank): no horovodrun
STEPS = 2 * TAU + 1


@pytest.fixture(scope="module")
def observed():
    proc = subprocess.run(
        [sys.executable, "tests/training/schedule_worker.py", str(TAU), str(STEPS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **QUIET_TF, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(REGISTRY))
def test_bench_counts_the_rounds_the_optimizer_runs(observed, name):
    got = observed["algorithms"][name]
    spec = REGISTRY[name]
    assert got["exchange"] == spec.exchange.name
    # A saved model's optimizer says what ran: sync exchanges every step.
    assert got["saved_tau"] == (TAU if spec.periodic else 1)
    assert got["rounds_on"] == [s for s in range(1, STEPS + 1) if spec.communicates(s - 1, TAU)]
    # Written out, not read from the registry: the paper's schedules, by 1-based step s.
    written = {
        "every": list(range(1, STEPS + 1)),
        "before": [s for s in range(1, STEPS + 1) if (s - 1) % TAU == 0],
        "after": [s for s in range(1, STEPS + 1) if s % TAU == 0],
    }
    every = ("sync", "cdsgd", "cdmsgd")
    elastic = ("easgd", "eamsgd", "tree_easgd")  # tau_root's default, 10, is TAU
    kind = "every" if name in every else "before" if name in elastic else "after"
    assert got["rounds_on"] == written[kind]
    assert got["has_center"] == spec.has_center
    assert got["evaluated"] == [spec.evaluated]


def test_every_exchange_has_equations_and_takes_its_arguments(observed):
    assert observed["rounds"] == sorted(EXCHANGES)
    for name, spec in REGISTRY.items():
        saved = set(observed["algorithms"][name]["saved"])
        assert set(spec.exchange.arguments) <= saved, name
