"""A job across two hosts, as Horovod users run one: `horovodrun -H a:1,b:1` over ssh.

The hosts are network namespaces with their own addresses and sshd, joined by a bridge whose
links tc limits to 100 Mbit/s (bench/namespace_hosts.py). Killing everything one host runs
makes the service relaunch the job from its checkpoint on the other host alone; that checkpoint
is the one `easgd jobs checkpoint` asked for, which the service cannot signal to ranks on other
hosts and leaves in the shared run directory instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest

from bench.namespace_hosts import NamespaceHosts, unavailable
from service import reachability
from tests.support import Service, kill_jobs

pytestmark = [pytest.mark.service, pytest.mark.horovod]
TINY = (Path(__file__).parent.parent / "training" / "tiny.yaml").read_text()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(f"no namespace hosts here: {why}")
    made = NamespaceHosts(tmp_path_factory.mktemp("hosts")).start()
    yield made
    made.close()


def _training_on(hosts: NamespaceHosts, i: int) -> list[int]:
    found = []
    for pid in hosts.pids(i):
        try:
            if "training" in psutil.Process(pid).cmdline():
                found.append(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def _run(service: Service, run_id: str) -> dict:
    """The run, or {} until rank 0 has recorded it."""
    r = httpx.get(f"{service.url}/runs/{run_id}", timeout=30)
    return r.json() if r.status_code == 200 else {}


def _until(what, check, timeout: float = 180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s")


def test_a_job_across_two_hosts_goes_on_without_the_host_it_lost(hosts, tmp_path):
    a, b = hosts.addresses
    service = Service(
        tmp_path / "home",
        serve_args=(
            "--hosts",
            f"{a}:1,{b}:1",
            "--network-interface",
            hosts.interface,
            "--ssh-identity-file",
            str(hosts.key),
        ),
    ).start()
    try:
        job = service.post(
            {
                "config": TINY,
                "set": [
                    # 2,200 steps of 2 workers: a loaded machine's CLI, a few seconds to start,
                    # asks for the checkpoint long before the run ends.
                    "training.epochs=100",
                    "checkpoint.every=100000",
                    "resources.min_workers=1",
                ],
            }
        ).json()
        running = service.wait(job["id"], {"running"}, timeout=60)
        assert running["hosts"] == f"{a}:1,{b}:1"
        run_id = f"job-{job['id']}"
        _until("training on both hosts", lambda: _run(service, run_id).get("last_step", 0) >= 25)
        assert _training_on(hosts, 1) and _training_on(hosts, 2)
        asked_at = _run(service, run_id)["last_step"]
        out = service.easgd("jobs", "checkpoint", str(job["id"]))
        assert out.returncode == 0 and "checkpoint asked for" in out.stdout, out.stderr
        saved = _until(
            "the checkpoint asked for",
            lambda: [e for e in _run(service, run_id)["events"] if e["kind"] == "checkpointed"],
            timeout=60,
        )
        assert len(saved) == 1 and asked_at < saved[0]["step"] and saved[0]["step"] % 10 == 0

        assert hosts.kill(2)
        restart = _until(
            "a restart",
            lambda: next(
                (e for e in _run(service, run_id).get("events", []) if e["kind"] == "restarted"),
                None,
            ),
        )
        assert restart["message"].startswith(f"rank 1 on {b} failed first (exit code ")
        assert restart["step"] == saved[0]["step"]
        assert "with 1 of 2 workers (restart 1 of 3)" in restart["message"]
        assert f"left out {b} (its rank 1 failed first)" in restart["message"]
        assert service.job(job["id"])["hosts"] == f"{a}:1"

        done = service.wait(job["id"], {"succeeded", "failed", "cancelled"}, timeout=300)
        assert done["status"] == "succeeded", done["message"]
        assert _training_on(hosts, 2) == []
        history = httpx.get(
            f"{service.url}/runs/{run_id}/metrics", params={"key": "workers"}, timeout=30
        ).json()
        sizes = [value for _, _, value in history["workers"]]
        assert sizes[0] == 2 and sizes[-1] == 1 and sorted(sizes, reverse=True) == sizes
        run = _run(service, run_id)
        assert run["status"] == "finished"
        assert run["metrics"]["center_accuracy"]["value"] > 0.5
    finally:
        service.stop()
        for i in (1, 2):
            hosts.kill(i)
        kill_jobs(service.home)  # horovodrun and its ssh clients, here


def test_only_the_hosts_that_answer_ssh_count_as_reachable(hosts):
    a, b = hosts.addresses
    nobody = a.rsplit(".", 1)[0] + ".99"  # on the bridge's subnet, but no host has it
    options = ["-i", str(hosts.key)]
    assert reachability.unreachable([a, b, "localhost", nobody], options) == [nobody]
    assert reachability.unreachable([a], ["-i", str(hosts.workdir / "host1_key.pub")]) == [a]
