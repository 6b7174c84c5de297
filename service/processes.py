"""Starting a job's process tree and making sure none of it outlives a cancel.

Each job runs in its own session (its own process group). Every process of a job carries the
launch's random token (`EASGD_JOB_TOKEN`) in its environment, so descendants that left the group
or were re-parented (Horovod starts ranks through its own launcher) are still found by the final
sweep. Job ids are not unique across stores (each numbers its jobs from 1), so a sweep never
matches an id: only the token, and the tree of a root that is provably the one launched.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

JOB_ENV = "EASGD_JOB_ID"
TOKEN_ENV = "EASGD_JOB_TOKEN"


def die_with_parent() -> None:
    """For a `preexec_fn`: the child gets SIGTERM if its parent is killed outright, instead of
    living on and holding its ports or the store's scheduler lease (Linux only: elsewhere the
    child outlives it; jobs are unaffected, the flag is not inherited)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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


# Whether a pid with its start time is still the process it was (not a reuse of the pid).
IsSameProcess = Callable[[int | None, float | None], bool]


def is_same_process(pid: int | None, start_time: float | None) -> bool:
    """True when pid is alive and is the process that started at start_time (not a reuse)."""
    if not pid or start_time is None:
        return False
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - start_time) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _carries(p: psutil.Process, token: str | None) -> bool:
    if not token:
        return False
    try:
        return p.environ().get(TOKEN_ENV) == token
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _own_root(
    token: str | None, root_pid: int | None, root_start_time: float | None
) -> psutil.Process | None:
    """The job's root process, if root_pid still is it: same start time, or it carries the token."""
    if not root_pid:
        return None
    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return None
    if root_start_time is not None:
        return root if is_same_process(root_pid, root_start_time) else None
    return root if _carries(root, token) else None


def job_processes(
    token: str | None, root_pid: int | None = None, root_start_time: float | None = None
) -> list[psutil.Process]:
    """Every live process of a job: its own root's tree, and anything carrying its token."""
    found: dict[int, psutil.Process] = {}
    root = _own_root(token, root_pid, root_start_time)
    if root is not None:
        try:
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    me = os.getpid()
    if token:
        for p in psutil.process_iter(["pid"]):
            if p.pid not in found and p.pid != me and _carries(p, token):
                found[p.pid] = p
    return [p for p in found.values() if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def ask_to_end(procs: Sequence[psutil.Process]) -> None:
    """SIGTERM to each of `procs` that is still there."""
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass


def terminate_job(
    token: str | None,
    root_pid: int | None,
    root_start_time: float | None,
    grace: float = 5.0,
) -> int | None:
    """SIGTERM the job's group and its processes, wait `grace`, SIGKILL what is left, sweep.

    Returns the signal that ended the root as a negative number, as `Popen.returncode` does
    (horovodrun exits 0 on SIGTERM, which would read as success), or None when no root of this
    job was alive.
    """
    root = _own_root(token, root_pid, root_start_time)
    procs = job_processes(token, root_pid, root_start_time)
    if root is not None:
        try:
            os.killpg(root.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    ask_to_end(procs)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    ended_by = -signal.SIGTERM if root is not None else None
    if root is not None and root in alive:
        ended_by = -signal.SIGKILL
    for sweep in range(3):
        alive = (
            [p for p in job_processes(token, root_pid, root_start_time) if _alive(p)]
            if sweep
            else alive
        )
        if not alive:
            break
        if root is not None and _alive(root):
            try:
                os.killpg(root.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=2)
        time.sleep(0.1)
    return ended_by


def on_this_host(proc: psutil.Process) -> bool:
    """Whether a process shares this one's network: ranks that another host runs may still be
    visible here (hosts that are network namespaces of one machine), but not to be signalled."""
    try:
        return os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return True  # no /proc namespaces to tell (not Linux): it is visible, so it is here
