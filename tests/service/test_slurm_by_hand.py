"""The README's hand-written batch script, as written, on the Slurm test cluster: submitted with
`sbatch` from the project's directory with `.venv` on the PATH and `EASGD_DB_URL` exported (as
the README says), it trains across two nodes, and its run is in `easgd runs list`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.support import BIN, ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.service]


def readme_batch_script() -> str:
    """The one fenced block of the README that is a batch script."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    found = [b for b in blocks if b.startswith("#!/bin/bash\n#SBATCH")]
    assert len(found) == 1, f"the README shows {len(found)} batch scripts"
    return found[0]


def test_the_readmes_batch_script_runs_as_written_and_its_run_is_listed(
    slurm_cluster, slurm_store_url, tmp_path
):
    script = tmp_path / "train.sbatch"
    script.write_text(readme_batch_script())
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # `. .venv/bin/activate`
        "VIRTUAL_ENV": str(BIN.parent),
        "EASGD_DB_URL": slurm_store_url,
        "EASGD_HOME": str(home),
        "SLURM_CONF": slurm_cluster["conf"],
    }
    out = tmp_path / "slurm.out"  # not slurm-<id>.out in the checkout
    submitted = subprocess.run(
        ["sbatch", "--parsable", "-o", str(out), str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert submitted.returncode == 0, submitted.stderr
    slurm_id = submitted.stdout.strip().split(";")[0]
    deadline, state = time.time() + 300, ""
    while time.time() < deadline:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", slurm_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        fields = dict(w.split("=", 1) for w in shown.split() if "=" in w)
        state = fields.get("JobState", "")
        if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            break
        time.sleep(1)
    said = out.read_text() if out.exists() else ""
    assert state == "COMPLETED", (state, said[-3000:])
    assert fields["NodeList"] == "node[1-2]"
    listed = subprocess.run(
        [str(BIN / "easgd"), "runs", "list", "--format", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["status"] == "finished" and run["source"] == "shell", run
    assert run["name"] == "mlp-digits-easgd" and run["workers"] == 2 and run["hosts"] == 2
    assert run["params"]["host_names"] == "node1,node2"
    assert run["metrics"]["center_accuracy"]["value"] > 0.5
