"""Deleting a run with its files: the store's records go in one transaction, the run's directory
after, and only a directory that is the run's own and lies under the data directory's runs/
folder (the store records whatever `--out` a shell run was given; that path is not ours to
remove). Whatever could not be removed is said, never hidden.

The API's DELETE /runs/{id} and `easgd runs delete` share this, so both refuse and report alike.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from db.errors import EasgdError
from db.run_edits import RunDeletion
from db.store import Store
from training.console import format_bytes


class RemovalRefused(EasgdError):
    """The run's directory is not one this product may remove: nothing was deleted."""

    http_status = 409


@dataclass
class Removal:
    deletion: RunDeletion
    files: bool  # whether the directory was asked to go too
    directory: Path | None = None  # the directory to remove: the run's own, present
    size: int = 0
    removed: bool = False
    problem: str | None = None  # why the directory is still there after the deletion

    def preview(self) -> str:
        """What a deletion will remove, for the question before it."""
        d = self.deletion
        what = f"run {d.run_id}: its record, {self._counts(' and ')}"
        if self.directory is not None:
            return f"{what}, and its directory {self.directory} ({format_bytes(self.size)})"
        return f"{what}; {self._directory_left()}"

    def line(self) -> str:
        """What a deletion did, in one line."""
        done = f"deleted run {self.deletion.run_id} ({self._counts(', ')})"
        if self.removed:
            return f"{done} and its directory {self.directory} ({format_bytes(self.size)})"
        if self.problem:
            return f"{done}, but {self.problem}"
        return f"{done}; {self._directory_left()}"

    def _counts(self, joint: str) -> str:
        d = self.deletion
        points = f"{d.metric_points} metric point" + ("" if d.metric_points == 1 else "s")
        return points + joint + f"{d.events} event" + ("" if d.events == 1 else "s")

    def _directory_left(self) -> str:
        run_dir = self.deletion.run_dir
        if not run_dir:
            return "it has no directory"
        if self.files:
            return f"its directory {run_dir} is already gone"
        return f"its directory {run_dir} is kept (delete with files to remove it)"


def plan_removal(store: Store, run_id: str, files: bool, runs_root: Path) -> Removal:
    """What `remove_run` would do, refused as it would be, with nothing changed."""
    removal = Removal(store.deletion(run_id), files)
    if files and removal.deletion.run_dir:
        removal.directory = own_directory(store, removal.deletion, runs_root)
        if removal.directory is not None:
            removal.size = directory_size(removal.directory)
    return removal


def remove_run(store: Store, run_id: str, files: bool, runs_root: Path) -> Removal:
    """Delete the run's records, then (with `files`) its directory; a refusal leaves both."""
    removal = plan_removal(store, run_id, files, runs_root)
    removal.deletion = store.delete_run(run_id)
    if removal.directory is None:
        return removal
    try:
        shutil.rmtree(removal.directory)  # refuses a symbolic link; never follows one inside
        removal.removed = True
    except OSError as exc:
        reason = exc.strerror or str(exc)
        removal.problem = (
            f"its directory {removal.directory} could not be removed ({reason}); remove it yourself"
        )
    return removal


def own_directory(store: Store, deletion: RunDeletion, runs_root: Path) -> Path | None:
    """The run's recorded directory when it may be removed; None when it is gone already.

    Refused: a path outside runs/ (after resolving every link on the way), runs/ itself, a
    symbolic link, something not a directory, or a directory that holds another run's."""
    run_id, recorded = deletion.run_id, deletion.run_dir or ""
    path = Path(recorded)
    root = runs_root.resolve()

    def refuse(why: str) -> RemovalRefused:
        return RemovalRefused(
            f"run {run_id}: its directory {recorded} {why}; nothing was deleted. Delete the run "
            "without its files, and remove the directory yourself if you mean to"
        )

    if not path.is_absolute():
        raise refuse("is not an absolute path")
    if path.is_symlink():
        raise refuse("is a symbolic link")
    if not path.exists():
        return None
    real = path.resolve()
    if real == root or not real.is_relative_to(root):
        raise refuse("is not inside the data directory's runs/ folder")
    if not real.is_dir():
        raise refuse("is not a directory")
    others = [r for r in store.runs_in_directory(str(path)) if r != run_id]
    if str(real) != str(path):
        others += [r for r in store.runs_in_directory(str(real)) if r != run_id]
    if others:
        raise refuse(f"also holds run {sorted(set(others))[0]}'s directory")
    return real


def directory_size(directory: Path) -> int:
    """Bytes of the files under `directory`, links not followed."""
    total = 0
    for parent, _, names in os.walk(directory):
        for name in names:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total
