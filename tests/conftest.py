"""Shared helpers: real horovodrun jobs, an isolated EASGD_HOME per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def horovodrun(
    np: int, args: list[str], env: dict | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    cmd = [
        str(BIN / "horovodrun"),
        "-np",
        str(np),
        "-H",
        f"localhost:{np}",
        "--gloo",
        sys.executable,
        *args,
    ]
    full_env = {**os.environ, **QUIET_TF, **(env or {})}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT
    )


@pytest.fixture
def easgd_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EASGD_HOME", str(home))
    monkeypatch.delenv("EASGD_DB_URL", raising=False)
    return home
