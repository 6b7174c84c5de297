"""The one horovodrun command line that the service, the benchmarks and the tests start.

It lives in training/ because service/, bench/ and tests/ may all import training/, while
training/ imports none of them; it imports no TensorFlow, so launching stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from training.schema.hosts import format_hosts

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})


def horovodrun_executable() -> str:
    """The horovodrun of this interpreter's environment, so that the ranks get the Horovod built
    against this TensorFlow even when the environment is not activated; PATH's otherwise."""
    beside = Path(sys.executable).parent / "horovodrun"
    return str(beside) if beside.exists() else "horovodrun"


def launcher(plain: bool = False) -> list[str]:
    """training.launch.horovodrun in this interpreter (horovodrun without its 3.5 s build check at every
    launch), or with `plain` the horovodrun command users type."""
    return (
        [horovodrun_executable()] if plain else [sys.executable, "-m", "training.launch.horovodrun"]
    )


def horovodrun_argv(
    np: int,
    program: Sequence[str],
    hosts: Mapping[str, int] | None = None,
    *,
    pin_loopback: bool = True,
    plain: bool = False,
    network_interface: str | None = None,
    ssh_port: int | None = None,
    ssh_identity_file: str | None = None,
) -> list[str]:
    """The horovodrun argument list (never a shell string, so no path or value is ever re-parsed
    by a shell). `hosts` defaults to all `np` ranks on localhost.

    With every host local, `pin_loopback` names `lo` as the interface: Horovod's interface
    discovery can hang where other interfaces exist but lead nowhere (it did for elastic runs),
    and loopback is the only one local ranks need. `pin_loopback=False` leaves the discovery to
    horovodrun, as the plain command the README gives users does; `plain` starts that command
    itself rather than training.launch.horovodrun. Across hosts,
    `network_interface` names the interface the ranks and the rendezvous use (it must have that
    name on every host and on this one), and the ssh options reach hosts whose sshd is not on
    port 22 or whose key is not the default one."""
    hosts = {"localhost": np} if hosts is None else hosts
    argv = [*launcher(plain), "-np", str(np), "-H", format_hosts(hosts), "--gloo"]
    local = set(hosts) <= LOCAL_HOSTS
    if pin_loopback and local:
        argv += ["--network-interface", "lo"]
    elif network_interface:
        argv += ["--network-interface", network_interface]
    if ssh_port is not None and not local:
        argv += ["--ssh-port", str(ssh_port)]
    if ssh_identity_file and not local:
        argv += ["--ssh-identity-file", ssh_identity_file]
    return argv + list(program)
