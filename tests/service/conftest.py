"""A real `easgd serve` on loopback with two slots, for the files that test jobs end to end."""

from __future__ import annotations

import pytest

from tests.support import Service, kill_jobs


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path / "home").start()
    yield svc
    svc.stop()
    kill_jobs(svc.home)
