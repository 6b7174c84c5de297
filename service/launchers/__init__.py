"""Launchers: what starts, signals and stops the ranks of one attempt of a job (base.py), and
the ones there are (horovodrun.py)."""

from service.launchers.base import (
    Allocation,
    Attempt,
    Failure,
    FirstFailure,
    Launched,
    Launcher,
    LaunchError,
)
from service.launchers.horovodrun import HorovodrunLauncher


def launcher_for(settings) -> Launcher:
    """The launcher the service's settings name (`easgd serve --launcher`)."""
    if settings.launcher == "slurm":
        from service.launchers.slurm import SlurmLauncher

        return SlurmLauncher(settings)
    return HorovodrunLauncher(settings)


__all__ = [
    "Allocation",
    "Attempt",
    "Failure",
    "FirstFailure",
    "HorovodrunLauncher",
    "LaunchError",
    "Launched",
    "Launcher",
    "launcher_for",
]
