"""Starting a job's process tree and making sure none of it outlives a cancel.

Each job runs in its own session (its own process group). Every process of a job carries
`EASGD_JOB_ID` in its environment, so descendants that left the group or were re-parented
(Horovod starts ranks through its own launcher) are still found by the final sweep.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

JOB_ENV = "EASGD_JOB_ID"


def spawn(
    argv: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path
) -> tuple[subprocess.Popen, float]:
    """Start argv (a list, never a shell) in a new session, stdout and stderr to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    return proc, psutil.Process(proc.pid).create_time()


def is_same_process(pid: int | None, start_time: float | None) -> bool:
    """True when pid is alive and is the process that started at start_time (not a reuse)."""
    if not pid or start_time is None:
        return False
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - start_time) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def job_processes(job_id: int, root_pid: int | None = None) -> list[psutil.Process]:
    """Every live process of a job: the root's tree, and anything carrying the job's marker."""
    found: dict[int, psutil.Process] = {}
    if root_pid:
        try:
            root = psutil.Process(root_pid)
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    marker = str(job_id)
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid in found or p.pid == me:
            continue
        try:
            if p.environ().get(JOB_ENV) == marker:
                found[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [p for p in found.values() if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def terminate_job(job_id: int, root_pid: int | None, grace: float = 5.0) -> int:
    """SIGTERM the job's group and its processes, wait `grace`, SIGKILL what is left, sweep.

    Returns how many processes had to be killed with SIGKILL.
    """
    procs = job_processes(job_id, root_pid)
    if root_pid:
        try:
            os.killpg(root_pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    killed = 0
    for sweep in range(3):
        alive = [p for p in job_processes(job_id, root_pid) if _alive(p)] if sweep else alive
        if not alive:
            break
        if root_pid:
            try:
                os.killpg(root_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in alive:
            try:
                p.kill()
                killed += 1
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=2)
        time.sleep(0.1)
    return killed


def tail(path: Path | str | None, lines: int = 50) -> str:
    if not path or not Path(path).exists():
        return ""
    with Path(path).open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        block = min(size, max(4096, lines * 400))
        f.seek(size - block)
        data = f.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:])
