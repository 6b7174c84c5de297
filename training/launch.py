"""The one horovodrun command line that the service, the benchmarks and the tests start.

It lives in training/ because service/, bench/ and tests/ may all import training/, while
training/ imports none of them; it imports no TensorFlow, so launching stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from training.hosts import format_hosts

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})


def horovodrun_executable() -> str:
    """The horovodrun of this interpreter's environment, so that the ranks get the Horovod built
    against this TensorFlow even when the environment is not activated; PATH's otherwise."""
    beside = Path(sys.executable).parent / "horovodrun"
    return str(beside) if beside.exists() else "horovodrun"


def horovodrun_argv(
    np: int,
    program: Sequence[str],
    hosts: Mapping[str, int] | None = None,
    *,
    pin_loopback: bool = True,
) -> list[str]:
    """The horovodrun argument list (never a shell string, so no path or value is ever re-parsed
    by a shell). `hosts` defaults to all `np` ranks on localhost.

    With every host local, `pin_loopback` names `lo` as the interface: Horovod's interface
    discovery can hang where other interfaces exist but lead nowhere (it did for elastic runs),
    and loopback is the only one local ranks need. `pin_loopback=False` leaves the discovery to
    horovodrun, as the plain command the README gives users does."""
    hosts = {"localhost": np} if hosts is None else hosts
    argv = [horovodrun_executable(), "-np", str(np), "-H", format_hosts(hosts), "--gloo"]
    if pin_loopback and set(hosts) <= LOCAL_HOSTS:
        argv += ["--network-interface", "lo"]
    return argv + list(program)
