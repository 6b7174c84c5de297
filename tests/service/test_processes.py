"""A job's processes, found and stopped for real: only the ones that are provably that job's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from service import processes

# A root that starts a grandchild in a session of its own (as launchers do), then waits.
ESCAPING_TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
time.sleep(600)
"""
# horovodrun's way: on SIGTERM it stops its ranks and exits 0.
EXITS_0_ON_TERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
time.sleep(600)
"""
IGNORES_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def _start(tmp_path: Path, name: str, code: str, job_id: str, token: str):
    env = {**os.environ, processes.JOB_ENV: job_id, processes.TOKEN_ENV: token}
    log = tmp_path / f"{name}.log"
    proc, started = processes.spawn([sys.executable, "-c", code], env, log, cwd=tmp_path)
    return proc, started, log


def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def cleanup():
    procs: list[psutil.Process] = []
    yield procs
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def test_a_sweep_touches_only_its_own_jobs_processes_even_with_the_same_job_id(tmp_path, cleanup):
    a, a_start, _ = _start(tmp_path, "a", ESCAPING_TREE, "1", "token-a")
    b, b_start, _ = _start(tmp_path, "b", ESCAPING_TREE, "1", "token-b")
    _until(lambda: len(processes.job_processes("token-a", a.pid, a_start)) == 2, "a's tree")
    _until(lambda: len(processes.job_processes("token-b", b.pid, b_start)) == 2, "b's tree")
    a_procs = processes.job_processes("token-a", a.pid, a_start)
    b_procs = processes.job_processes("token-b", b.pid, b_start)
    cleanup.extend(a_procs + b_procs)
    assert not {p.pid for p in a_procs} & {p.pid for p in b_procs}

    processes.terminate_job("token-b", b.pid, b_start, grace=5)
    b.wait(timeout=10)
    assert processes.job_processes("token-b", b.pid, b_start) == []
    assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in a_procs)
    still = processes.job_processes("token-a", a.pid, a_start)
    assert {p.pid for p in still} == {p.pid for p in a_procs}


def test_a_root_that_is_not_the_jobs_own_process_is_left_alone(tmp_path, cleanup):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    cleanup.append(psutil.Process(other.pid))
    started = psutil.Process(other.pid).create_time()
    # A recorded pid now reused by another process: another start time, no token.
    assert processes.job_processes("token-x", other.pid, started + 100) == []
    assert processes.terminate_job("token-x", other.pid, started + 100, grace=0.2) is None
    assert other.poll() is None


def test_terminate_reports_the_signal_that_ended_the_root(tmp_path, cleanup):
    polite, polite_start, polite_log = _start(tmp_path, "p", EXITS_0_ON_TERM, "1", "t-p")
    stubborn, stubborn_start, stubborn_log = _start(tmp_path, "s", IGNORES_TERM, "2", "t-s")
    cleanup.extend([psutil.Process(polite.pid), psutil.Process(stubborn.pid)])
    _until(lambda: "ready" in polite_log.read_text(), "the polite root is ready")
    _until(lambda: "ready" in stubborn_log.read_text(), "the stubborn root is ready")

    assert processes.terminate_job("t-p", polite.pid, polite_start, grace=5) == -signal.SIGTERM
    assert polite.wait(timeout=10) == 0  # its own exit code says nothing of the cancel
    assert processes.terminate_job("t-s", stubborn.pid, stubborn_start, 0.3) == -signal.SIGKILL
    stubborn.wait(timeout=10)
