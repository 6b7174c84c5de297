"""The optimizer's round-robin order on the paper's stability problem (x^2 / 2, h = 1) grows or
decays at the rate of the map the paper analyses, inside and outside its bound."""

from __future__ import annotations

import json

import pytest

from bench.stability import cycle_map, measured_rate, spectral_radius
from tests.support import horovodrun
from training.schema import stability_bound

pytestmark = pytest.mark.horovod
ETA = 0.5
STEPS = 80
FACTORS = (0.9, 1.5)


@pytest.fixture(scope="module", params=[1, 2])
def printed(request) -> tuple[int, dict[float, str]]:
    """One launch per number of workers runs every factor (tests/training/stability_worker.py):
    (workers, each factor's line of norms as bench.stability_run prints it)."""
    workers = request.param
    alphas = [str(f * stability_bound(ETA)) for f in FACTORS]
    proc = horovodrun(
        workers, ["-m", "tests.training.stability_worker", str(ETA), str(STEPS), *alphas]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if '"norms"' in line]
    assert len(lines) == len(FACTORS), proc.stdout[-3000:]
    for line in lines:
        assert len(json.loads(line[line.index("{") :])["norms"]) == STEPS
    return workers, dict(zip(FACTORS, lines))


@pytest.mark.parametrize("factor", FACTORS)
def test_growth_rate_is_the_maps_spectral_radius(printed, factor):
    workers, lines = printed
    alpha = factor * stability_bound(ETA)
    rate = measured_rate(lines[factor])
    rho = spectral_radius(cycle_map(workers, ETA, alpha, "round_robin"))
    assert rate == pytest.approx(rho, rel=1e-2)
    assert (rate < 1) == (factor < 1)
