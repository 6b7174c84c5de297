"""Deleting a run with its files: the store's records go in one transaction, the run's directory
after, and only a directory that is the run's own and lies under the data directory's runs/
folder (the store records whatever `--out` a shell run was given; that path is not ours to
remove). Whatever could not be removed is said, never hidden.

A crash at any point leaves nothing nobody sees: the directory is first renamed to
runs/.deleting-<run id>-<token> (one atomic step), then the records go (the directory moved back
if they cannot), then the renamed directory. What an interrupted deletion left there,
`finish_deletions` finishes when the service starts. Deletions and that take turns through a
lock on runs/ itself.

The API's DELETE /runs/{id} and `easgd runs delete` share this, so both refuse and report alike.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from db.errors import EasgdError, NotFound
from db.run_edits import RunDeletion
from db.store import Store
from training.run.console import format_bytes


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
    aside: Path | None = None  # where the directory was moved to be removed

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
    if removal.directory is None:
        removal.deletion = store.delete_run(run_id)
        return removal
    with _deletions_locked(runs_root):
        aside = _move_aside(run_id, removal.directory, runs_root)
        if aside is None:  # deleted meanwhile by another: the store says so
            removal.deletion = store.delete_run(run_id)
            return removal
        removal.aside = aside
        try:
            removal.deletion = store.delete_run(run_id)
        except BaseException:
            with suppress(OSError):  # else the next start of the service moves it back
                os.rename(aside, removal.directory)
            raise
        try:
            shutil.rmtree(aside)  # refuses a symbolic link; never follows one inside
            removal.removed = True
        except OSError as exc:
            reason = exc.strerror or str(exc)
            removal.problem = (
                f"its directory {removal.directory} could not be removed ({reason}); what is "
                f"left of it is {aside}: remove that yourself (the service removes it when it "
                "next starts)"
            )
    return removal


DELETING = ".deleting-"
_ASIDE = re.compile(re.escape(DELETING) + r"(?P<run_id>.+)-[0-9a-f]{16}")


def _move_aside(run_id: str, directory: Path, runs_root: Path) -> Path | None:
    """Rename the run's directory to runs/.deleting-<run id>-<token>; None if it is gone."""
    aside = runs_root.resolve() / f"{DELETING}{run_id}-{secrets.token_hex(8)}"
    try:
        os.rename(directory, aside)
    except FileNotFoundError:
        return None
    except OSError as exc:  # another file system (a mount under runs/), or no permission
        raise RemovalRefused(
            f"run {run_id}: its directory {directory} could not be moved to "
            f"{aside} to be removed ({exc.strerror or exc}); nothing was deleted. Delete the run "
            "without its files, and remove the directory yourself if you mean to"
        ) from None
    return aside


def finish_deletions(store: Store, runs_root: Path) -> list[str]:
    """Finish the deletions a crash interrupted, one line for each: a directory moved aside
    whose run is gone is removed; one whose run is still recorded (its records never went) is
    moved back where the run records it."""
    if not runs_root.is_dir():
        return []
    notes = []
    with _deletions_locked(runs_root):
        for aside in sorted(runs_root.resolve().iterdir()):
            found = _ASIDE.fullmatch(aside.name)
            if found is None or aside.is_symlink() or not aside.is_dir():
                continue
            run_id = found["run_id"]
            try:
                recorded = store.get_run(run_id).run_dir
            except NotFound:
                notes.append(_remove_left_over(aside, run_id))
                continue
            back = Path(recorded or "")
            if not recorded or not back.is_absolute():
                why = "the run records no directory to move it back to"
            elif os.path.lexists(back):
                why = f"{back} is taken"
            else:
                try:
                    os.rename(aside, back)
                    notes.append(
                        f"run {run_id}: its deletion stopped before its records went; its "
                        f"directory is back at {back}"
                    )
                    continue
                except OSError as exc:
                    why = f"it could not be moved back to {back} ({exc.strerror or exc})"
            notes.append(
                f"run {run_id}: its deletion stopped before its records went, and {why}; its "
                f"files are in {aside}: move them where you want them"
            )
    return notes


def _remove_left_over(aside: Path, run_id: str) -> str:
    size = directory_size(aside)
    try:
        shutil.rmtree(aside)
    except OSError as exc:
        return (
            f"run {run_id} was deleted, but what is left of its directory, {aside}, could not "
            f"be removed ({exc.strerror or exc}); remove it yourself"
        )
    return f"run {run_id} was deleted: removed what was left of its directory, {aside} " + (
        f"({format_bytes(size)})"
    )


@contextmanager
def _deletions_locked(runs_root: Path) -> Iterator[None]:
    """One deletion at a time on runs/, across processes (the CLI works beside the service)."""
    fd = os.open(runs_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    if real == root:
        raise refuse("is the data directory's runs/ folder itself, which is never removed")
    if not real.is_relative_to(root):
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
