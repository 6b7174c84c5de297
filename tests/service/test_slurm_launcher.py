"""`easgd serve --launcher slurm` on the Slurm test cluster (tests/slurm_cluster.py: a controller
and three nodes of two CPUs), with a PostgreSQL store that the service and the ranks on the nodes
share. A job is one batch job: it waits in Slurm's queue with Slurm's reason shown, trains on the
allocated nodes and ends `succeeded`; a cancel ends it CANCELLED with nothing left on any node;
a node whose ranks die is left out of the relaunch (`--exclude`); an attempt at its time limit
ends TIMEOUT; a job Slurm could never run is refused at submit with Slurm's reason; a restarted service adopts a running batch job, and a
`scancel` by hand ends the job cancelled."""

from __future__ import annotations

import os
import signal
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
def service(slurm_cluster, slurm_store_url, tmp_path_factory):
    made = Service(
        tmp_path_factory.mktemp("slurm") / "home",
        serve_args=(
            "--launcher",
            "slurm",
            "--tasks-per-node",
            "1",
            "--network-interface",
            slurm_cluster["interface"],
        ),
    )
    made.env["SLURM_CONF"] = slurm_cluster["conf"]
    made.env["EASGD_DB_URL"] = slurm_store_url
    yield made.start()
    made.stop()
    _slurm(slurm_cluster, "scancel", "--name=easgd-blocker")


def _slurm(slurm_cluster: dict, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SLURM_CONF": slurm_cluster["conf"]}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def _scontrol(slurm_cluster: dict, slurm_id: str) -> dict[str, str]:
    shown = _slurm(slurm_cluster, "scontrol", "show", "job", "-o", slurm_id).stdout
    return dict(w.split("=", 1) for w in shown.split() if "=" in w)


def _until(what: str, check, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _scheduler(service: Service, job_id: int, prefix: str, timeout: float = 120) -> dict:
    """The job once Slurm's state, as the service recorded it, starts with `prefix`."""

    def seen():
        j = service.job(job_id)
        return j if (j.get("scheduler_state") or "").startswith(prefix) else None

    return _until(f"job {job_id}'s Slurm state {prefix}...", seen, timeout)


def _training(slurm_cluster: dict) -> dict[str, list[int]]:
    """The training processes on each node (namespace), by pid."""
    found: dict[str, list[int]] = {}
    for node, ns in zip(slurm_cluster["nodes"], slurm_cluster["namespaces"]):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                if "training" in psutil.Process(int(pid)).cmdline():
                    found.setdefault(node, []).append(int(pid))
            except psutil.NoSuchProcess:
                continue
    return found


def _trains(service: Service, job_id: int, steps: int = 5) -> None:
    def recorded():
        r = httpx.get(f"{service.url}/runs/job-{job_id}", timeout=30)
        return r.status_code == 200 and r.json().get("last_step", 0) >= steps

    _until(f"job {job_id}'s run past step {steps}", recorded, 180)


def test_a_job_waits_in_slurms_queue_then_trains_on_its_nodes_and_succeeds(slurm_cluster, service):
    blocker = _slurm(
        slurm_cluster,
        *("sbatch", "--parsable", "--job-name=easgd-blocker", "-N3", "--ntasks-per-node=2"),
        *("-o", "/dev/null", "--wrap", "sleep 300"),
    )
    assert blocker.returncode == 0, blocker.stderr
    blocker_id = blocker.stdout.strip()
    _until(
        "the blocker runs", lambda: _scontrol(slurm_cluster, blocker_id)["JobState"] == "RUNNING"
    )
    job = service.post({"config": TINY}).json()
    waiting = _scheduler(service, job["id"], "PENDING (")
    slurm_id = waiting["scheduler_job"].removeprefix("slurm ")
    assert waiting["status"] == "running" and waiting["scheduler_state"] == "PENDING (Resources)"
    shown = service.easgd("jobs", "show", str(job["id"]))
    assert f"scheduler slurm {slurm_id}: PENDING (Resources)\n" in shown.stdout, shown.stdout
    _slurm(slurm_cluster, "scancel", blocker_id)
    running = _scheduler(service, job["id"], "RUNNING on ")
    assert running["scheduler_state"] == "RUNNING on node[1-2]"
    done = service.wait(job["id"], {"succeeded", "failed"}, timeout=300)
    log = (service.home / "jobs" / str(job["id"]) / "job.log").read_text()
    assert done["status"] == "succeeded", log[-3000:]
    assert done["scheduler_state"] == "COMPLETED"
    shown = _scontrol(slurm_cluster, slurm_id)
    assert shown["JobState"] == "COMPLETED" and shown["NodeList"] == "node[1-2]"
    assert f"Slurm job {slurm_id} on node1:1,node2:1" in log
    run = httpx.get(f"{service.url}/runs/job-{job['id']}", timeout=30).json()
    assert run["status"] == "finished" and run["workers"] == 2 and run["hosts"] == 2
    assert run["params"]["host_names"] == "node1,node2"


def test_a_job_slurm_could_never_run_is_refused_at_submit_with_slurms_reason(service):
    # Three nodes, one task each (--tasks-per-node 1): four workers can never fit.
    r = service.post({"config": TINY, "set": ["resources.workers=4"]})
    assert r.status_code == 422, r.text
    said = r.json()["detail"]
    assert "Slurm refuses 4 workers: allocation failure: Requested node configuration is not" in (
        str(said)
    )
    out = service.easgd(
        "submit", str(Path(__file__).parents[1] / "training" / "tiny.yaml"), "--workers", "4", "-q"
    )
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Requested node configuration is not available" in lines[0]


def test_an_attempt_at_its_time_limit_ends_timeout_and_a_limit_over_the_partitions_is_refused(
    slurm_cluster, service
):
    over = service.post({"config": TINY, "set": ["resources.time_limit_minutes=120"]})
    assert over.status_code == 422, over.text
    assert over.json()["detail"][0]["msg"] == (
        "resources.time_limit_minutes: partition debug allows at most 60 minutes (its MaxTime; "
        "received: 120)"
    )
    job = service.post(
        {
            "config": TINY,
            "set": [
                "training.epochs=10000",
                "resources.time_limit_minutes=1",
                "resources.max_restarts=0",
            ],
        }
    ).json()
    slurm_id = _scheduler(service, job["id"], "RUNNING")["scheduler_job"].removeprefix("slurm ")
    assert _scontrol(slurm_cluster, slurm_id)["TimeLimit"] == "00:01:00"
    done = service.wait(job["id"], {"failed", "succeeded", "cancelled"}, timeout=300)
    assert done["status"] == "failed" and done["scheduler_state"] == "TIMEOUT (TimeLimit)", done
    assert "the batch job reached its time limit" in done["message"]
    _until("no training process left", lambda: not _training(slurm_cluster), 60)


def test_cancel_ends_the_slurm_job_and_leaves_nothing_on_the_nodes(slurm_cluster, service):
    job = service.post({"config": TINY, "set": ["training.epochs=1000"]}).json()
    _trains(service, job["id"])
    slurm_id = service.job(job["id"])["scheduler_job"].removeprefix("slurm ")
    assert sorted(_training(slurm_cluster)) == ["node1", "node2"]
    assert _scontrol(slurm_cluster, slurm_id)["JobState"] == "RUNNING"
    out = service.easgd("jobs", "cancel", str(job["id"]))
    assert out.returncode == 0, out.stderr
    done = service.wait(job["id"], {"cancelled"}, timeout=120)
    assert done["scheduler_state"] == "CANCELLED"
    assert _scontrol(slurm_cluster, slurm_id)["JobState"] == "CANCELLED"
    # The ranks horovodrun started over ssh are not Slurm's steps: they go with their peers.
    _until("no training process left", lambda: not _training(slurm_cluster), 60)
    run = httpx.get(f"{service.url}/runs/job-{job['id']}", timeout=30).json()
    assert run.get("status") == "cancelled", run


def test_a_node_whose_ranks_die_is_left_out_of_the_relaunch(slurm_cluster, service):
    job = service.post(
        {
            "config": TINY,
            "set": [
                "training.epochs=30",
                "checkpoint.every=10",
                "resources.max_restarts=1",
            ],
        }
    ).json()
    _trains(service, job["id"], steps=25)  # a checkpoint at step 20 at least
    first = service.job(job["id"])["scheduler_job"]
    assert sorted(_training(slurm_cluster)) == ["node1", "node2"]
    for pid in _training(slurm_cluster)["node2"]:
        os.kill(pid, signal.SIGKILL)

    def relaunched():
        j = service.job(job["id"])
        return j if j["scheduler_job"] not in (None, first) else None

    again = _until("a second batch job", relaunched, 180)
    done = service.wait(job["id"], {"succeeded", "failed"}, timeout=400)
    log = (service.home / "jobs" / str(job["id"]) / "job.log").read_text()
    assert done["status"] == "succeeded", log[-3000:]
    second = again["scheduler_job"].removeprefix("slurm ")
    shown = _scontrol(slurm_cluster, second)
    assert shown["NodeList"] == "node[1,3]" and shown["ExcNodeList"] == "node2"
    events = httpx.get(f"{service.url}/runs/job-{job['id']}", timeout=30).json()["events"]
    restarted = [e["message"] for e in events if e["kind"] == "restarted"]
    assert len(restarted) == 1, events
    assert restarted[0].startswith("rank 1 on node2 failed first"), restarted
    assert (
        "with 2 of 2 workers (restart 1 of 1); left out node2 (its rank 1 failed first)"
        in (restarted[0])
    )
    started = [e["message"] for e in events if e["kind"] == "started"]
    assert "eamsgd on 2 workers on node1, node2," in started[0], started
    assert (
        started[-1].startswith("resumed at step ")
        and "on 2 workers on node1, node3," in (started[-1])
    )


def test_a_restarted_service_adopts_the_batch_job_and_a_scancel_by_hand_cancels_it(
    slurm_cluster, service
):
    job = service.post({"config": TINY, "set": ["training.epochs=1000"]}).json()
    _trains(service, job["id"])
    slurm_id = service.job(job["id"])["scheduler_job"].removeprefix("slurm ")
    service.stop()
    assert _scontrol(slurm_cluster, slurm_id)["JobState"] == "RUNNING"  # not the service's
    service.start()
    said = service.log.read_text()
    assert f"job {job['id']}: still running (slurm {slurm_id}), supervised again" in said, said
    assert service.job(job["id"])["status"] == "running"
    _slurm(slurm_cluster, "scancel", slurm_id)
    done = service.wait(job["id"], {"cancelled", "failed", "succeeded"}, timeout=120)
    assert done["status"] == "cancelled", done
    assert done["message"] == f"Slurm job {slurm_id} was cancelled outside the service (scancel)"
    _until("no training process left", lambda: not _training(slurm_cluster), 60)


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
