"""Where a job's ranks can go: this service's hosts, slots and GPUs, less what running attempts
hold. Pure functions of the settings and the allocations in use, so the API's check before
queueing and the scheduler's placement answer alike."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from service.settings import ServiceSettings
from training.schema.hosts import Hosts, format_hosts


@dataclass
class Allocation:
    """Where an attempt's ranks go: slots per host, and the GPUs they may use; `avoid` names the
    hosts a relaunch was to leave out (a scheduler that places the ranks itself is told them:
    Slurm's --exclude)."""

    hosts: Hosts
    gpus: list[str] = field(default_factory=list)
    avoid: list[str] = field(default_factory=list)

    @property
    def ranks(self) -> int:
        return sum(self.hosts.values())


def placement_problem(
    settings: ServiceSettings,
    workers: int,
    gpus_per_worker: int = 0,
    requested: Hosts | None = None,
) -> str | None:
    """Why this service can never place such a job, or None when it can once slots are free.

    The API asks before it queues a job; the scheduler asks again before each placement, since
    the service may have restarted with fewer hosts, slots or GPUs since.
    """
    ours = settings.hosts
    mine = f"this service has {format_hosts(ours)}"
    if requested:
        unknown = [h for h in requested if h not in ours]
        if unknown:
            return (
                f"resources.hosts: {', '.join(unknown)} is not among this service's hosts; "
                f"{mine}; name those, or start the service with --hosts"
            )
        over = [f"{h}:{n}" for h, n in requested.items() if n > ours[h]]
        if over:
            return f"resources.hosts: {', '.join(over)} asks more slots than {mine}"
    elif workers > settings.slots:
        return (
            f"resources.workers: needs {workers} slots; {mine} ({settings.slots} "
            "slots); lower the workers, or start the service with more --slots or --hosts"
        )
    gpus = workers * gpus_per_worker
    if gpus > len(settings.gpus):
        return (
            f"resources.gpus_per_worker: needs {gpus} GPUs; this service has {len(settings.gpus)}"
        )
    return None


def allocate(
    settings: ServiceSettings,
    in_use: Iterable[Allocation],
    workers: int,
    gpus_per_worker: int = 0,
    requested: Hosts | None = None,
    exclude: Collection[str] = (),
) -> Allocation | None:
    """Where `workers` ranks go now, or None until slots are free; the requested hosts only
    (else any of the service's, in its order), never those in `exclude`."""
    used_hosts: Hosts = {}
    used_gpus: set[str] = set()
    for a in in_use:
        for name, n in a.hosts.items():
            used_hosts[name] = used_hosts.get(name, 0) + n
        used_gpus.update(a.gpus)
    gpus_needed = workers * gpus_per_worker
    gpus = [g for g in settings.gpus if g not in used_gpus][:gpus_needed]
    if len(gpus) < gpus_needed:
        return None
    remaining = workers
    hosts: Hosts = {}
    for name, cap in (requested or settings.hosts).items():
        if name in exclude:
            continue
        take = min(cap, settings.hosts[name] - used_hosts.get(name, 0), remaining)
        if take > 0:
            hosts[name] = take
            remaining -= take
        if remaining == 0:
            return Allocation(hosts, gpus, sorted(exclude))
    return None
