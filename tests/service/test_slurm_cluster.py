"""The Slurm test cluster itself (tests/slurm_cluster.py), as the Slurm launcher's tests will use
it: a real controller and three compute nodes, each a network namespace with its own address and
hostname, driven through the real `srun`, `sbatch`, `squeue` and `scontrol`."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slurm


def _slurm(slurm_cluster: dict, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLURM_CONF": slurm_cluster["conf"]}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def _state(slurm_cluster: dict, job: str) -> str:
    shown = _slurm(slurm_cluster, "scontrol", "show", "job", job).stdout
    return next(w.split("=", 1)[1] for w in shown.split() if w.startswith("JobState="))


def test_each_node_has_its_own_hostname_and_address(slurm_cluster):
    assert slurm_cluster["nodes"] == ["node1", "node2", "node3"]
    done = _slurm(
        slurm_cluster,
        "srun",
        "-N3",
        "--ntasks-per-node=1",
        "sh",
        "-c",
        "echo $(hostname) $(getent hosts $(hostname) | cut -d' ' -f1)",
    )
    assert done.returncode == 0, done.stderr
    seen = sorted(line.split() for line in done.stdout.splitlines())
    assert seen == [[n, a] for n, a in zip(slurm_cluster["nodes"], slurm_cluster["addresses"])]


def test_a_batch_job_runs_horovod_across_both_nodes(slurm_cluster, tmp_path):
    """What a user's own batch script does (docs/hosts.md): the hosts from
    SLURM_JOB_NODELIST, horovodrun over ssh between the nodes, one rank on each. The service's
    own batch script is tested in test_slurm_launcher.py."""
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "hosts=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | sed 's/$/:1/' | paste -sd,)\n"
        f"cd {ROOT}\n"
        f'.venv/bin/horovodrun -np 2 -H "$hosts" --gloo --network-interface '
        f"{slurm_cluster['interface']} --ssh-identity-file {slurm_cluster['key']} .venv/bin/python -c "
        '"import horovod.tensorflow as hvd, socket; hvd.init(); '
        "print('rank', hvd.rank(), 'on', socket.gethostname())\"\n"
    )
    out = tmp_path / "job.out"
    submitted = _slurm(
        slurm_cluster,
        "sbatch",
        "--parsable",
        "-N2",
        "--ntasks-per-node=1",
        "-o",
        str(out),
        str(script),
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    seen, deadline = set(), time.time() + 240
    while time.time() < deadline:
        state = _state(slurm_cluster, job)
        seen.add(state)
        if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            break
        time.sleep(0.5)
    assert state == "COMPLETED", (state, out.read_text() if out.exists() else "")
    assert "RUNNING" in seen
    ranks = sorted(
        line.split("<stdout>:", 1)[1]
        for line in out.read_text().splitlines()
        if "<stdout>:rank" in line
    )
    assert ranks == ["rank 0 on node1", "rank 1 on node2"]
