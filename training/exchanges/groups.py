"""The groups of Tree EASGD (`tree_easgd`): which ranks form each group, and which rank leads it.

Groups are blocks of `group_size` consecutive ranks; the first rank of each is its leader, and the
leaders exchange with the root center. horovodrun numbers ranks host by host (the ranks of the
first host, then those of the next), so with the default group size, the ranks of one host, each
group is one host when every host runs the same number of ranks.

Pure Python, importing neither TensorFlow nor Horovod: the training program checks a launch with
it before TensorFlow is imported, and Horovod needs the layout before `hvd.init` (process sets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class GroupError(ValueError):
    """A group size that does not fit the ranks launched; the message is one line, naming
    `optimizer.group_size`. `every_rank`: whether every rank reaches the same refusal (then rank 0
    alone needs to say it)."""

    def __init__(self, message: str, every_rank: bool = True):
        super().__init__(message)
        self.every_rank = every_rank


@dataclass(frozen=True)
class Layout:
    """`size` ranks in groups of `group_size` consecutive ranks."""

    size: int
    group_size: int

    @property
    def count(self) -> int:
        return self.size // self.group_size

    @property
    def groups(self) -> tuple[tuple[int, ...], ...]:
        g = self.group_size
        return tuple(tuple(range(k * g, (k + 1) * g)) for k in range(self.count))

    @property
    def leaders(self) -> tuple[int, ...]:
        return tuple(group[0] for group in self.groups)

    def group_of(self, rank: int) -> tuple[int, ...]:
        return self.groups[rank // self.group_size]

    def process_sets(self) -> tuple[tuple[int, ...], ...]:
        """The rank sets that need a Horovod process set: a group and the leaders, each unless it
        is a single rank (nothing to exchange) or every rank (Horovod's global set)."""
        wanted = (*self.groups, self.leaders)
        return tuple(dict.fromkeys(s for s in wanted if 1 < len(s) < self.size))


def layout(size: int, group_size: int) -> Layout:
    """The layout, or a GroupError when `group_size` does not divide `size`."""
    if group_size < 1 or size % group_size:
        raise GroupError(
            f"optimizer.group_size: {group_size} does not divide the {size} worker"
            f"{'s' if size != 1 else ''}; choose a divisor of the number of ranks "
            f"(received: {group_size})"
        )
    return Layout(size, group_size)


@dataclass(frozen=True)
class Launch:
    """How horovodrun placed this rank: ranks in all, on this rank's host, and hosts."""

    size: int
    local_size: int
    cross_size: int


def _int(env: Mapping[str, str], *keys: str) -> int | None:
    for key in keys:
        if key in env:
            try:
                return int(env[key])
            except ValueError:
                return None
    return None


def launched(env: Mapping[str, str] | None = None) -> Launch:
    """This rank's placement as horovodrun announced it in the environment (Gloo's launcher sets
    HOROVOD_SIZE, HOROVOD_LOCAL_SIZE and HOROVOD_CROSS_SIZE, Open MPI its own); one rank outside
    a launcher."""
    env = os.environ if env is None else env
    size = _int(env, "HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE") or 1
    local = _int(env, "HOROVOD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE") or size
    cross = _int(env, "HOROVOD_CROSS_SIZE") or max(1, size // local)
    return Launch(size, local, cross)


def resolve(group_size: int | None, launch: Launch) -> Layout:
    """The layout for a configured group size, or for the default, the ranks of one host, which
    needs every host to run the same number of ranks. Every rank reaches the same answer when the
    hosts are even; a rank on an uneven layout refuses (at least one rank always sees it)."""
    if group_size is not None:
        return layout(launch.size, group_size)
    if launch.local_size * launch.cross_size != launch.size:
        raise GroupError(
            "optimizer.group_size: the hosts run different numbers of ranks (this one "
            f"{launch.local_size} of {launch.size}), so 'the ranks of one host' is no group size; "
            "set optimizer.group_size (received: null)",
            every_rank=False,
        )
    return layout(launch.size, launch.local_size)
