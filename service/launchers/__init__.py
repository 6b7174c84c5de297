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

__all__ = [
    "Allocation",
    "Attempt",
    "Failure",
    "FirstFailure",
    "HorovodrunLauncher",
    "LaunchError",
    "Launched",
    "Launcher",
]
