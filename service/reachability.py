"""Whether the hosts of a placement still answer ssh, before a job is relaunched onto them.

A host that is down or cut off would make horovodrun hang in its own ssh check and then fail
the relaunch; asking first, all hosts at once and briefly, lets the job go on without it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from training.launch.argv import LOCAL_HOSTS

SSH_TIMEOUT_SECONDS = 5


def answers_ssh(host: str, ssh_options: Sequence[str], timeout: int = SSH_TIMEOUT_SECONDS) -> bool:
    """True when `ssh host true` succeeds without a password prompt within `timeout`."""
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"ConnectTimeout={timeout}",
        *ssh_options,
        host,
        "true",
    ]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout + 5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def unreachable(hosts: Iterable[str], ssh_options: Sequence[str]) -> list[str]:
    """The remote hosts among `hosts` that do not answer ssh (local ones are not asked)."""
    remote = [h for h in hosts if h not in LOCAL_HOSTS]
    if not remote:
        return []
    with ThreadPoolExecutor(max_workers=min(len(remote), 16)) as pool:
        answers = list(pool.map(lambda h: answers_ssh(h, ssh_options), remote))
    return [h for h, ok in zip(remote, answers, strict=True) if not ok]
