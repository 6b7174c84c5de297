"""Loading a saved model that carries our optimizer runs no collective (issue: rank 0 alone)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support import horovodrun

pytestmark = pytest.mark.horovod


def test_rank0_alone_loads_a_model_saved_with_the_optimizer(tmp_path):
    try:
        proc = horovodrun(2, ["tests/training/load_model_worker.py", str(tmp_path)], timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("load_model on rank 0 alone hung: deserializing ran a collective")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["loaded"] and result["tau"] == 2
    assert all(result["same_weights"])
    assert result["same_center"]
