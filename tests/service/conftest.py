"""A real `easgd serve` on loopback with two slots, for the files that test jobs end to end."""

from __future__ import annotations

import json
import os
import secrets
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


@pytest.fixture(scope="module")
def slurm_store_url(slurm_cluster):
    """A PostgreSQL database of its own, which the service and the ranks on the nodes both reach
    (the server on the bridge's address, as scripts/test-services.sh lets the nodes in): the
    store of a Slurm deployment. Dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text

    url = os.environ.get("EASGD_TEST_SLURM_DB_URL")
    if not url:
        pytest.skip(
            "no PostgreSQL the Slurm nodes reach (scripts/test-services.sh sets "
            "EASGD_TEST_SLURM_DB_URL once both are up)"
        )
    given = make_url(url)
    name = f"easgd_slurm_{secrets.token_hex(4)}"
    admin = create_engine(given.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield given.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
