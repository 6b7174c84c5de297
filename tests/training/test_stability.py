"""The optimizer's round-robin order on the paper's stability problem (x^2 / 2, h = 1) grows or
decays at the rate of the map the paper analyses, inside and outside its bound."""

from __future__ import annotations

import pytest

from bench.stability import cycle_map, measured_rate, spectral_radius
from tests.support import horovodrun
from training.schema import stability_bound

pytestmark = pytest.mark.horovod
ETA = 0.5
STEPS = 80


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("factor", [0.9, 1.5])
def test_growth_rate_is_the_maps_spectral_radius(workers, factor):
    alpha = factor * stability_bound(ETA)
    proc = horovodrun(
        workers, ["-m", "bench.stability_run", str(ETA), str(alpha), "round_robin", str(STEPS)]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rate = measured_rate(proc.stdout)
    rho = spectral_radius(cycle_map(workers, ETA, alpha, "round_robin"))
    assert rate == pytest.approx(rho, rel=1e-2)
    assert (rate < 1) == (factor < 1)
