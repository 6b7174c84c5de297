"""Hosts and their slots, as `horovodrun -H` reads them: `h1:4,h2:2`.

One type (an ordered mapping of host name to slots) and one parser for everything that names
hosts: a job's `resources.hosts`, the service's `--hosts` and `EASGD_HOSTS`, and the placement a
job was given. Horovod's own parser requires the slots and allows letters, digits, `_`, `.` and
`-` in a name; so does this one, and it refuses what Horovod would silently merge (a host named
twice) or fail on late (zero slots).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from db.errors import EasgdError

MAX_SLOTS = 1024
MAX_HOSTS = 256
# A name starts with a letter or digit: horovodrun would read "-x" as an option.
_PART = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]{0,252}):([0-9]{1,30})")
SYNTAX = "host:slots[,host:slots...], e.g. h1:4,h2:4"
# For documents (JSON Schema, OpenAPI); the parser below is what decides.
HOSTS_PATTERN = r"^\s*[A-Za-z0-9_.-]+:[0-9]+\s*(,\s*[A-Za-z0-9_.-]+:[0-9]+\s*)*$"

Hosts = dict[str, int]


class HostsError(EasgdError, ValueError):
    def __init__(self, what: str, detail: str):
        super().__init__(f"{what}: {detail}")
        self.detail = detail


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def parse_hosts(text: str, what: str = "hosts") -> Hosts:
    """The hosts in `text`; HostsError names `what` (the flag or field) and what was wrong."""
    if not isinstance(text, str):
        raise HostsError(what, f"{SYNTAX} (received: {text!r})")
    parts = text.split(",")
    if len(parts) > MAX_HOSTS:
        raise HostsError(what, f"at most {MAX_HOSTS} hosts (received {len(parts)})")
    hosts: Hosts = {}
    for part in parts:
        m = _PART.fullmatch(part.strip())
        if m is None:
            raise HostsError(what, f"{SYNTAX} (received: {_short(text)})")
        name, slots = m.group(1), int(m.group(2))
        if not 1 <= slots <= MAX_SLOTS:
            raise HostsError(
                what, f"1 to {MAX_SLOTS} slots per host (received: {name}:{m.group(2)})"
            )
        if name in hosts:
            raise HostsError(what, f"{name} is named twice; give it once with all its slots")
        hosts[name] = slots
    return hosts


def local_slots(value: str | int, what: str = "slots") -> Hosts:
    """`--slots N` and `EASGD_SLOTS`: N ranks at once on this machine."""
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= MAX_SLOTS:
        raise HostsError(what, f"an integer from 1 to {MAX_SLOTS} (received: {value!r})")
    return {"localhost": int(text)}


def format_hosts(hosts: Mapping[str, int]) -> str:
    """`-H`'s value, in the mapping's order."""
    return ",".join(f"{host}:{slots}" for host, slots in hosts.items())


def host_of_rank(hosts: Mapping[str, int], rank: int) -> str | None:
    """The host that runs `rank`: horovodrun fills each host's slots in `-H` order."""
    for host, slots in hosts.items():
        if rank < slots:
            return host
        rank -= slots
    return None
