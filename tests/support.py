"""What tests share beyond fixtures: real horovodrun jobs, a real service, run records.

Fixtures live in conftest.py; tests import these by name, as they would any helper module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy
import psutil

from db.store import Store
from service.processes import job_processes
from training.launch.argv import horovodrun_argv

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def horovodrun(
    np: int,
    args: list[str],
    env: dict | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
    plain: bool = False,
) -> subprocess.CompletedProcess:
    """Without --network-interface, as users run it. `plain` starts the very command the README
    gives; otherwise the launcher the service uses, which skips horovodrun's Gloo build check
    (3.5 s of TensorFlow import before every launch) and changes nothing in the ranks."""
    cmd = horovodrun_argv(np, [sys.executable, *args], pin_loopback=False, plain=plain)
    full_env = {**os.environ, **QUIET_TF, **(env or {})}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd or ROOT
    )


def worker_results(np: int, script: str, out: Path, timeout: float = 400) -> tuple[dict, Any]:
    """Run a reference-test worker under horovodrun; rank 0 saved its results to `out` (.npz)
    with a JSON `meta` entry: (meta, the arrays)."""
    proc = horovodrun(np, [script, str(out)], timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = numpy.load(out)
    return json.loads(str(data["meta"])), data


def relative_error(actual: numpy.ndarray, expected: numpy.ndarray) -> float:
    """max |actual - expected| / max |expected|, as the reference tests compare weights."""
    return float(numpy.max(numpy.abs(actual - expected)) / numpy.max(numpy.abs(expected)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_of(home: Path) -> Store:
    """The SQLite store of a service started with `Service(home)`."""
    return Store(f"sqlite:///{home / 'easgd.db'}")


def processes_of(home: Path, job_id: int) -> list[psutil.Process]:
    j = store_of(home).get_job(job_id)
    return job_processes(j.launch_token, j.pid, j.pid_start_time)


def kill_jobs(home: Path) -> None:
    """What a test's jobs left running (a stopped service leaves its jobs to the next one)."""
    for j in store_of(home).list_jobs():
        for p in processes_of(home, j.id):
            p.kill()


class Service:
    def __init__(self, home: Path, slots: int = 2, serve_args: tuple[str, ...] = ()):
        """`serve_args` replace `--slots` when they name --hosts or --launcher."""
        self.home, self.slots, self.serve_args = home, slots, serve_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **QUIET_TF, "EASGD_HOME": str(home), "EASGD_API_URL": self.url}
        self.env.pop("EASGD_DB_URL", None)
        self.proc: subprocess.Popen | None = None
        self.log = home / f"service-{self.port}.log"

    def start(self) -> Service:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(BIN / "easgd"),
                "serve",
                "--port",
                str(self.port),
                *(
                    []
                    if {"--hosts", "--launcher"} & set(self.serve_args)
                    else ["--slots", str(self.slots)]
                ),
                *self.serve_args,
            ],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        token = self.env.get("EASGD_API_TOKEN")
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", headers=auth, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.3)
        raise AssertionError("service did not start: " + self.log.read_text())

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def post(self, body: dict) -> httpx.Response:
        return httpx.post(f"{self.url}/jobs", json=body, timeout=30)

    def job(self, job_id: int) -> dict:
        r = httpx.get(f"{self.url}/jobs/{job_id}", timeout=30)
        r.raise_for_status()
        return r.json()

    def wait(self, job_id: int, statuses: set[str], timeout: float = 240) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(job_id)
            if j["status"] in statuses:
                return j
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {j['status']} after {timeout}s")

    def easgd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "easgd"), *args], capture_output=True, text=True, env=self.env, timeout=120
        )


def run_record(run_id: str, params: dict | None = None, metrics: dict | None = None, **kw):
    """A finished run as the store returns it, for tests of what shows runs."""
    from db.entities import RunRecord

    base = dict(
        id=run_id,
        name=None,
        status="finished",
        source="shell",
        run_dir=None,
        workers=2,
        hosts=1,
        job_id=None,
        start_time=100.0,
        end_time=160.0,
        heartbeat_time=160.0,
        last_step=10,
        total_steps=10,
        error=None,
    )
    base.update(kw)
    return RunRecord(**base, params=params or {}, metrics=metrics or {})
