"""The job service as users meet it: a real `easgd serve` process on loopback, real horovodrun
jobs with 2 ranks, the REST API and the `easgd` CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import BIN, Service, free_port, kill_jobs, processes_of, store_of

pytestmark = [pytest.mark.service, pytest.mark.horovod]
TINY = (Path(__file__).parent.parent / "training" / "tiny.yaml").read_text()


def test_jobs_run_one_after_another_to_success_and_are_recorded(service):
    """The service's two slots hold one 2-rank job: a second one, submitted from the CLI, waits
    for the first to end."""
    r = service.post({"config": TINY, "name": "smoke"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["config"]["optimizer"]["tau"] == 4
    second = service.easgd(
        "submit", "-q", "tests/training/tiny.yaml", "--workers", "2", "--set", "optimizer.tau=2"
    )
    assert second.returncode == 0, second.stderr
    second_id = int(second.stdout.strip())
    first = service.wait(job["id"], {"running"})
    assert service.job(second_id)["status"] == "queued"
    assert first["hosts"] == "localhost:2"

    done = service.wait(job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["message"]
    assert done["exit_code"] == 0 and done["run_id"] == f"job-{job['id']}"
    run = httpx.get(f"{service.url}/runs/{done['run_id']}", timeout=30).json()
    assert run["status"] == "finished" and run["source"] == "api" and run["job_id"] == job["id"]
    assert run["metrics"]["center_accuracy"]["step"] == 44
    assert [e["kind"] for e in run["events"]][-1] == "finished"
    api_log = httpx.get(f"{service.url}/jobs/{job['id']}/logs", params={"tail": 50}).text
    assert "finished run job-" in api_log
    cli_log = service.easgd("jobs", "logs", str(job["id"]))
    assert cli_log.returncode == 0 and "finished run job-" in cli_log.stdout
    followed = service.easgd("jobs", "logs", str(job["id"]), "--follow")
    assert "finished run job-" in followed.stdout

    later = service.wait(second_id, {"succeeded", "failed"})
    assert later["status"] == "succeeded", later["message"]
    assert later["started_at"] >= done["ended_at"]
    found = httpx.get(
        f"{service.url}/runs", params={"filter": "params.optimizer.tau = 4"}, timeout=30
    ).json()
    assert [r["id"] for r in found] == [done["run_id"]]
    listed = service.easgd("jobs", "list")
    assert listed.stdout.count("succeeded") == 2, listed.stdout
    # The store keeps each job's launch token; no reply and no output shows it.
    token = store_of(service.home).get_job(job["id"]).launch_token
    assert token and "launch_token" not in done and "launch_token" not in job
    shown = service.easgd("jobs", "show", str(job["id"]), "--format", "json")
    assert shown.returncode == 0 and f'"id": {job["id"]}' in shown.stdout, shown.stderr
    every_reply = [shown.stdout, listed.stdout, httpx.get(f"{service.url}/jobs").text]
    assert not [text for text in every_reply if token in text or "launch_token" in text]


def _wait_for_steps(service, run_id: str, steps: int = 3) -> None:
    """Until the ranks themselves train (not only horovodrun starting them)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        r = httpx.get(f"{service.url}/runs/{run_id}", timeout=30)
        if r.status_code == 200 and r.json()["last_step"] >= steps:
            return
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not start training")


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_cancel_in_one_service_spares_another_services_job_with_the_same_id(tmp_path):
    a = Service(tmp_path / "a").start()
    b = Service(tmp_path / "b").start()
    try:
        for svc in (a, b):
            assert svc.post({"config": TINY, "set": ["training.epochs=500"]}).json()["id"] == 1
        for svc in (a, b):
            svc.wait(1, {"running"})
            _wait_for_steps(svc, "job-1")
        root = psutil.Process(a.job(1)["pid"])
        a_procs = [root, *root.children(recursive=True)]
        assert len(a_procs) >= 3
        out = b.easgd("jobs", "cancel", "1")
        assert out.returncode == 0, out.stderr
        assert b.wait(1, {"cancelled", "succeeded", "failed"}, timeout=15)["status"] == "cancelled"
        assert _alive(a_procs) == a_procs
        assert a.job(1)["status"] == "running"
        a.easgd("jobs", "cancel", "1")
    finally:
        for svc in (a, b):
            svc.stop()
            kill_jobs(svc.home)


def _rank(job_root: psutil.Process, rank: int = 0) -> psutil.Process:
    for p in job_root.children(recursive=True):
        try:
            if p.environ().get("HOROVOD_RANK") == str(rank) and "training" in p.cmdline():
                return p
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no rank {rank} under the job's horovodrun")


def test_killing_rank_0_fails_the_job_and_its_run_with_a_reason(service):
    job = service.post(
        {"config": TINY, "set": ["training.epochs=500", "resources.max_restarts=0"]}
    ).json()
    running = service.wait(job["id"], {"running"})
    _wait_for_steps(service, f"job-{job['id']}")
    _rank(psutil.Process(running["pid"])).kill()
    done = service.wait(job["id"], {"succeeded", "failed", "cancelled"}, timeout=60)
    run = httpx.get(f"{service.url}/runs/{done['run_id']}", timeout=30).json()
    assert done["status"] == "failed"
    assert run["status"] == "failed" and run["end_time"] is not None
    assert run["error"] and run["error"] == done["message"].splitlines()[0]


def test_a_killed_rank_restarts_the_job_from_its_checkpoint(service):
    job = service.post(
        {"config": TINY, "set": ["training.epochs=30", "checkpoint.every=10"]}
    ).json()
    running = service.wait(job["id"], {"running"})
    run_id = f"job-{job['id']}"
    _wait_for_steps(service, run_id, steps=25)
    before = processes_of(service.home, job["id"])
    killed_at = time.time()
    _rank(psutil.Process(running["pid"]), 1).kill()
    deadline = time.time() + 60
    while time.time() < deadline:
        events = httpx.get(f"{service.url}/runs/{run_id}", timeout=30).json()["events"]
        if any(e["kind"] == "restarted" for e in events):
            break
        time.sleep(0.5)
    relaunched = time.time() - killed_at
    assert relaunched < 30, relaunched
    assert _alive(before) == []  # nothing of the first attempt survives it
    done = service.wait(job["id"], {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done["status"] == "succeeded", done["message"]
    assert "restarted 1 time(s)" in done["message"]
    run = httpx.get(f"{service.url}/runs/{run_id}", timeout=30).json()
    assert run["status"] == "finished"
    restart = next(e for e in run["events"] if e["kind"] == "restarted")
    assert "relaunched from the checkpoint at step" in restart["message"]
    assert "with 2 of 2 workers (restart 1 of 3)" in restart["message"]
    resumed = [e for e in run["events"] if e["kind"] == "started"][-1]
    assert f"resumed at step {restart['step']}" in resumed["message"]


def _events_of(service, run_id: str, kind: str, count: int = 1, timeout: float = 90) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = httpx.get(f"{service.url}/runs/{run_id}", timeout=30).json()["events"]
        found = [e for e in events if e["kind"] == kind]
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise AssertionError(f"run {run_id}: fewer than {count} {kind} events in {timeout} s")


def _training_job(service, epochs: int) -> tuple[dict, str]:
    """A running job with no periodic checkpoint, past its first steps: (job, run id)."""
    job = service.post(
        {"config": TINY, "set": [f"training.epochs={epochs}", "checkpoint.every=100000"]}
    ).json()
    service.wait(job["id"], {"running"})
    run_id = f"job-{job['id']}"
    _wait_for_steps(service, run_id, steps=15)
    return job, run_id


def test_a_running_job_checkpoints_on_demand_scales_and_is_cancelled(service):
    """One job for three things a running job is asked (one launch rather than three): a
    checkpoint now, a new number of workers, and a cancel that leaves no process behind."""
    job, run_id = _training_job(service, 2000)

    # A checkpoint on demand lands within ten steps.
    asked_at = httpx.get(f"{service.url}/runs/{run_id}", timeout=30).json()["last_step"]
    out = service.easgd("jobs", "checkpoint", str(job["id"]))
    assert out.returncode == 0 and "checkpoint asked for" in out.stdout, out.stderr
    # Ranks that got the signal on either side of an agreement step may save twice: fine.
    saved = _events_of(service, run_id, "checkpointed")[0]
    assert asked_at < saved["step"] and saved["step"] % 10 == 0
    assert (service.home / "runs" / run_id / "checkpoints").is_dir()

    # Scaling down and up continues the same run.
    for workers, count in ((1, 1), (2, 2)):
        out = service.easgd("jobs", "scale", str(job["id"]), "--workers", str(workers))
        assert out.returncode == 0 and f"scaling to {workers} workers" in out.stdout, out.stderr
        scaled = _events_of(service, run_id, "scaled", count)[-1]
        assert f"to {workers} workers at step" in scaled["message"]
        resumed = _events_of(service, run_id, "started", count + 1)[-1]
        assert f"resumed at step {scaled['step']}" in resumed["message"]
        _wait_for_steps(service, run_id, steps=scaled["step"] + 15)
    history = httpx.get(
        f"{service.url}/runs/{run_id}/metrics", params={"key": "workers"}, timeout=30
    ).json()
    sizes = [value for _, _, value in history["workers"]]
    changes = [a for a, b in zip(sizes, [None, *sizes]) if a != b]
    assert changes == [2, 1, 2], sizes
    assert httpx.get(f"{service.url}/jobs/{job['id']}", timeout=30).json()["workers"] == 2
    bad = service.easgd("jobs", "scale", str(job["id"]), "--workers", "99")
    assert bad.returncode != 0 and "--workers: needs 99 slots" in bad.stderr

    # A cancel leaves no process and closes the run.
    before = processes_of(service.home, job["id"])
    assert len(before) >= 3  # horovodrun and two ranks at least
    out = service.easgd("jobs", "cancel", str(job["id"]))
    assert out.returncode == 0, out.stderr
    done = service.wait(job["id"], {"cancelled", "succeeded", "failed"}, timeout=15)
    run = httpx.get(f"{service.url}/runs/{done['run_id']}", timeout=30).json()
    assert done["status"] == "cancelled"
    assert run["status"] == "cancelled" and run["end_time"] is not None
    assert done["exit_code"] in (-15, -9)  # the signal that stopped it, not horovodrun's 0
    assert _alive(before) == []
    assert processes_of(service.home, job["id"]) == []
    refused = service.easgd("jobs", "checkpoint", str(job["id"]))
    assert refused.returncode != 0 and "only a running job of this service" in refused.stderr


def test_a_failed_job_says_why_first(service):
    data = service.home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "broken.npz").write_text("this is not a NumPy archive\n")
    job = service.post(
        {"config": TINY, "set": ["data.dataset=npz", f"data.path={data / 'broken.npz'}"]}
    ).json()
    assert "id" in job, job
    done = service.wait(job["id"], {"succeeded", "failed"})
    assert done["status"] == "failed"
    first, second, *_ = done["message"].splitlines()
    assert first.startswith("run failed: ") and "npz" in first, done["message"]
    assert second.startswith("exit code 1"), done["message"]
    run = httpx.get(f"{service.url}/runs/{done['run_id']}", timeout=30).json()
    assert run["status"] == "failed"


def test_restart_adopts_live_job_and_launches_nothing_twice(service):
    job = service.post({"config": TINY, "set": ["training.epochs=12"]}).json()
    running = service.wait(job["id"], {"running"})
    service.kill9()
    assert psutil.pid_exists(running["pid"])  # the job outlives its service
    service.start()
    assert "supervised again" in service.log.read_text()
    done = service.wait(job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["message"]
    log = Path(done["log_path"]).read_text()
    assert log.count(f"easgd service: job {job['id']}:") == 1
    assert log.count("started: eamsgd") == 1


def test_restart_marks_a_dead_job_lost(service):
    job = service.post({"config": TINY, "set": ["training.epochs=500"]}).json()
    running = service.wait(job["id"], {"running"})
    service.kill9()
    root = psutil.Process(running["pid"])
    for p in [*root.children(recursive=True), root]:
        p.kill()
    service.start()
    done = service.job(job["id"])
    assert done["status"] == "failed"
    assert done["message"] == "lost: the service stopped while it ran"
    time.sleep(2)
    assert service.job(job["id"])["status"] == "failed"  # never relaunched


def test_bad_configuration_is_422_naming_the_field(service):
    r = service.post({"config": {"optimizer": {"tau": 0}}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "optimizer.tau"
    assert "received: 0" in r.json()["detail"][0]["msg"]
    r = service.post({"config": "optimizer: [unclosed"})
    assert r.status_code == 422 and "not valid YAML" in r.text
    r = service.post({"config": {"data": {"dataset": "npz", "path": "/etc/passwd"}}})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "data.path"
    r = service.post({"config": {}, "command": "rm -rf /"})
    assert r.status_code == 422
    out = service.easgd("submit", "tests/training/tiny.yaml", "--set", "optimizer.beta=7")
    assert out.returncode == 2 and "optimizer.beta" in out.stderr
    assert httpx.get(f"{service.url}/jobs").json() == []


def _answering(url: str, seconds: float = 60) -> None:
    """Wait until something answers HTTP at `url` (any status: a token may be required)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            httpx.get(f"{url}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.3)


def test_non_loopback_needs_a_token(tmp_path):
    env = {**os.environ, "EASGD_HOME": str(tmp_path)}
    env.pop("EASGD_API_TOKEN", None)
    refused = subprocess.run(
        [str(BIN / "easgd"), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2 and "EASGD_API_TOKEN" in refused.stderr
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "easgd"), "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={**env, "EASGD_API_TOKEN": "s3cret"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _answering(url)
        for method, path in (
            ("GET", "/health"),
            ("GET", "/jobs"),
            ("POST", "/jobs"),
            ("GET", "/runs"),
            ("GET", "/openapi.json"),
        ):
            assert httpx.request(method, url + path, json={}).status_code == 401, path
        wrong = httpx.get(f"{url}/jobs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.get(f"{url}/jobs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_second_service_on_the_same_port_refuses_before_touching_the_store(service):
    job = service.post({"config": TINY, "set": ["training.epochs=12"]}).json()
    service.wait(job["id"], {"running"})
    second = subprocess.run(
        [str(BIN / "easgd"), "serve", "--port", str(service.port)],
        capture_output=True,
        text=True,
        env=service.env,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"cannot listen on 127.0.0.1:{service.port}" in second.stderr
    assert "supervised again" not in second.stdout and "listening" not in second.stdout
    assert service.job(job["id"])["status"] == "running"  # the first service still owns it


def test_a_second_service_on_the_same_store_is_refused_until_the_first_is_gone(tmp_path):
    first = Service(tmp_path / "home").start()
    second = Service(tmp_path / "home")  # the same EASGD_HOME, another port
    try:
        refused = subprocess.Popen(
            [str(BIN / "easgd"), "serve", "--port", str(second.port)],
            env=second.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = refused.communicate(timeout=60)
        finally:
            refused.kill()
        assert refused.returncode == 2, (out, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"another easgd service ({first.url}, pid {first.proc.pid} on " in err
        assert "stop it, or use another EASGD_HOME/EASGD_DB_URL" in err
        assert "listening" not in out and "supervised again" not in out
        first.kill9()  # its lease stays behind, held by a dead pid on this host
        second.start()
        health = httpx.get(f"{second.url}/health", timeout=10)
        assert health.status_code == 200 and health.json()["scheduling"] is True
    finally:
        second.stop()
        first.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_a_service_on_ipv6_loopback_prints_a_url_that_works(tmp_path):
    env = {**os.environ, "EASGD_HOME": str(tmp_path)}
    env.pop("EASGD_DB_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "easgd"), "serve", "--host", "::1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"listening on http://[::1]:{port} " in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        _answering(url)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_up_killed_outright_takes_its_service_with_it(tmp_path):
    port = free_port()
    env = {**os.environ, "EASGD_HOME": str(tmp_path)}
    env.pop("EASGD_DB_URL", None)
    up = subprocess.Popen(
        [str(BIN / "easgd"), "up", "--no-ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _answering(f"http://127.0.0.1:{port}")
        children = psutil.Process(up.pid).children()
        assert children, "easgd up started no service"
        up.kill()
        up.wait(timeout=10)
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        for p in psutil.Process(up.pid).children() if up.poll() is None else []:
            p.kill()
        up.kill()
