"""A real `easgd serve` on loopback with two slots, for the files that test jobs end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import Service, kill_jobs


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path / "home").start()
    yield svc
    svc.stop()
    kill_jobs(svc.home)


@pytest.fixture(scope="module")
def slurm_cluster() -> dict:
    """The Slurm test cluster scripts/test-services.sh starts (tests/slurm_cluster.py)."""
    found = os.environ.get("EASGD_TEST_SLURM")
    if not found or not Path(found).exists():
        pytest.skip(
            "no Slurm test cluster (scripts/test-services.sh starts one as root where slurm-wlm "
            "and munge install; EASGD_TEST_SLURM names it)"
        )
    return json.loads(Path(found).read_text())
