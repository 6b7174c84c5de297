"""`easgd serve --launcher slurm`'s refusals, each in one line, before anything starts."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import BIN


@pytest.mark.parametrize(
    "args, env, phrase",
    [
        (["--slots", "2"], {}, "Slurm places the ranks; drop --hosts and --slots"),
        (["--hosts", "a:2"], {}, "Slurm places the ranks; drop --hosts and --slots"),
        (["--tasks-per-node", "0"], {}, "--tasks-per-node must be at least 1 (received: 0)"),
        ([], {"PATH": "/nonexistent"}, "sinfo: No such file or directory; is Slurm installed"),
    ],
)
def test_a_slurm_service_refuses_what_cannot_work_in_one_line(tmp_path, args, env, phrase):
    done = subprocess.run(
        [str(BIN / "easgd"), "serve", "--launcher", "slurm", "--port", "1", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "EASGD_HOME": str(tmp_path), **env},
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], done.stderr
