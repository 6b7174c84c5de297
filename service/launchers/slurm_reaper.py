"""One Slurm step on each node of an attempt's batch job, started before the ranks: Slurm tracks
its steps' processes, not those horovodrun starts over ssh, so a `scancel`, a time limit or the
end of the batch script would leave those ranks running. Every step gets SIGTERM when the job
ends; this one then ends the attempt's processes on its node (those carrying the attempt's
token), as `easgd jobs cancel` promises: nothing of a job outlives it.

    python -m service.launchers.slurm_reaper TOKEN
"""

from __future__ import annotations

import signal
import sys
import threading

import psutil

from service import processes

GRACE = 5.0


def on_this_node(token: str) -> list[psutil.Process]:
    """The processes of the attempt `token` on this node (on the test cluster a node is a
    network namespace; on a real node every process shares the host's), this one excepted."""
    return [p for p in processes.job_processes(token) if processes.on_this_host(p)]


def reap(token: str, grace: float = GRACE) -> int:
    """SIGTERM, then SIGKILL after `grace`, to what the attempt left here; how many there were."""
    procs = on_this_node(token)
    processes.ask_to_end(procs)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return len(procs)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0]:
        print("usage: python -m service.launchers.slurm_reaper TOKEN", file=sys.stderr)
        return 2
    ended = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: ended.set())
    ended.wait()
    reap(argv[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
