"""`easgd serve --launcher slurm` on the Slurm test cluster (tests/slurm_cluster.py): a job is
one batch job that trains on the nodes Slurm allocated and ends `succeeded`; a cancelled job
ends CANCELLED in Slurm, with nothing of it left on any node, and its run closed as cancelled."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import Service

pytestmark = [pytest.mark.slurm, pytest.mark.service]
TINY = (Path(__file__).parents[1] / "training" / "tiny.yaml").read_text()


@pytest.fixture(scope="module")
def service(slurm_cluster, tmp_path_factory):
    made = Service(
        tmp_path_factory.mktemp("slurm") / "home",
        serve_args=(
            "--launcher",
            "slurm",
            "--tasks-per-node",
            "1",
            "--network-interface",
            slurm_cluster["interface"],
            "--ssh-identity-file",
            slurm_cluster["key"],
        ),
    )
    made.env["SLURM_CONF"] = slurm_cluster["conf"]
    yield made.start()
    made.stop()


def _scontrol(slurm_cluster: dict, slurm_id: str) -> dict[str, str]:
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", slurm_id],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_CONF": slurm_cluster["conf"]},
        timeout=30,
    ).stdout
    return dict(w.split("=", 1) for w in shown.split() if "=" in w)


def _slurm_id(service: Service, job_id: int, timeout: float = 60) -> str:
    log = service.home / "jobs" / str(job_id) / "job.log"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                if ": Slurm job " in line and line.startswith(f"easgd service: job {job_id}"):
                    return line.rsplit(" ", 1)[1]
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} names no Slurm job: {log}")


def _training_on(slurm_cluster: dict) -> list[str]:
    found = []
    for ns in slurm_cluster["namespaces"]:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                if "training" in psutil.Process(int(pid)).cmdline():
                    found.append(ns)
            except psutil.NoSuchProcess:
                continue
    return found


def test_a_job_trains_on_the_allocated_nodes_and_succeeds(slurm_cluster, service):
    job = service.post({"config": TINY}).json()
    slurm_id = _slurm_id(service, job["id"])
    done = service.wait(job["id"], {"succeeded", "failed"}, timeout=300)
    log = (service.home / "jobs" / str(job["id"]) / "job.log").read_text()
    assert done["status"] == "succeeded", log[-3000:]
    shown = _scontrol(slurm_cluster, slurm_id)
    assert shown["JobState"] == "COMPLETED" and shown["NodeList"] == "node[1-2]"
    assert shown["JobName"].startswith("easgd-")
    assert f"Slurm job {slurm_id} on node1:1,node2:1" in log
    run = httpx.get(f"{service.url}/runs/job-{job['id']}", timeout=30).json()
    assert run["status"] == "finished" and run["workers"] == 2 and run["hosts"] == 2


def test_cancel_ends_the_slurm_job_and_leaves_nothing_on_the_nodes(slurm_cluster, service):
    job = service.post({"config": TINY, "set": ["training.epochs=1000"]}).json()
    slurm_id = _slurm_id(service, job["id"])
    deadline = time.time() + 120
    while time.time() < deadline:  # rank 0 has recorded the run and trains
        r = httpx.get(f"{service.url}/runs/job-{job['id']}", timeout=30)
        if r.status_code == 200 and r.json().get("last_step", 0) >= 5:
            break
        time.sleep(0.5)
    assert sorted(set(_training_on(slurm_cluster))) == sorted(slurm_cluster["namespaces"])
    assert _scontrol(slurm_cluster, slurm_id)["JobState"] == "RUNNING"
    out = service.easgd("jobs", "cancel", str(job["id"]))
    assert out.returncode == 0, out.stderr
    assert service.wait(job["id"], {"cancelled"}, timeout=120)["status"] == "cancelled"
    assert _scontrol(slurm_cluster, slurm_id)["JobState"] == "CANCELLED"
    # The ranks horovodrun started over ssh are not Slurm's steps: they go with their peers.
    deadline = time.time() + 60
    while _training_on(slurm_cluster) and time.time() < deadline:
        time.sleep(0.5)
    assert _training_on(slurm_cluster) == []
    run = httpx.get(f"{service.url}/runs/job-{job['id']}", timeout=30).json()
    assert run.get("status") == "cancelled", run


def test_the_service_hands_out_the_partitions_cpus_and_none_of_this_machines_gpus(
    slurm_cluster, monkeypatch
):
    """Slurm gives the nodes' GPUs (--gpus-per-task): the service's own must not be exported
    into a batch job as CUDA_VISIBLE_DEVICES."""
    from service.cli import build_parser
    from service.cli.serve import _settings

    monkeypatch.setenv("SLURM_CONF", slurm_cluster["conf"])
    monkeypatch.setenv("EASGD_GPUS", "0,1")
    settings = _settings(build_parser().parse_args(["serve", "--launcher", "slurm"]))
    cpus = 2 * len(slurm_cluster["nodes"])  # CPUs=2 per node in the test cluster's slurm.conf
    assert settings.hosts == {"slurm": cpus} and settings.gpus == []
