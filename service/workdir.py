"""A user's working directory, as a job takes it: packed by the client, checked and unpacked by
the service into a content-addressed snapshot, copied into the job's own directory at launch.

Both ends apply the same rules, so that a refusal comes before anything is sent, and again where
it matters (the service trusts no archive): regular files, directories and links that stay
inside; no absolute or `..` paths; at most MAX_FILES entries and MAX_UNPACKED_BYTES; version
control, virtual environments and caches left out.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import posixpath
import secrets
import shutil
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from db.errors import EasgdError
from db.settings import home

MAX_ARCHIVE_BYTES = 64 << 20
MAX_UNPACKED_BYTES = 256 << 20
MAX_FILES = 10_000
MAX_PATH_CHARS = 1024
# Left out wherever they are: version control, caches, and the product's own data directory.
EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        "node_modules",
        ".easgd",
    }
)
EXCLUDED_FILES = ("*.pyc", "*.pyo")


class WorkdirError(EasgdError, ValueError):
    """A working directory or an upload refused: what is wrong, what to do, what was received."""

    exit_code = 2


@dataclass(frozen=True)
class Snapshot:
    code: str  # sha256:<hex> of the archive
    files: int
    bytes: int


def _text(name: str, where: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise WorkdirError(
            f"{where}: a file name is not UTF-8 ({name!r:.120}); rename it or exclude it"
        ) from None
    return name


def _excluded(rel: str, name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _walk(root: Path, excludes: list[str]) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of everything kept, directories before what they hold."""
    for here, dirs, files in os.walk(root, followlinks=False):
        base = Path(here)
        kept = []
        for d in sorted(dirs):
            path = base / d
            rel = path.relative_to(root).as_posix()
            if (
                d in EXCLUDED_DIRS
                or (not path.is_symlink() and (path / "pyvenv.cfg").exists())
                or _excluded(rel, d, excludes)
            ):
                continue
            if path.is_symlink():  # os.walk lists a link to a directory among directories
                files.append(d)
                continue
            kept.append(d)
            yield rel, path
        dirs[:] = kept
        for f in sorted(files):
            path = base / f
            rel = path.relative_to(root).as_posix()
            if not _excluded(rel, f, (*EXCLUDED_FILES, *excludes)):
                yield rel, path


def pack(directory: str | Path, excludes: list[str] | None = None) -> bytes:
    """The directory as a gzip-compressed tar archive, or a WorkdirError saying what to change."""
    where = "--working-dir"
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise WorkdirError(f"{where}: not a directory (received: {str(directory)!r:.200})")
    root = root.resolve()
    buffer = io.BytesIO()
    files = total = 0
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel, path in _walk(root, list(excludes or [])):
            _text(rel, where)
            files += 1
            if files > MAX_FILES:
                raise WorkdirError(
                    f"{where}: more than {MAX_FILES:,} files in {root}; leave data and outputs "
                    "out with --exclude PATTERN"
                )
            if path.is_symlink():
                target = (path.parent / os.readlink(path)).resolve()
                if not target.is_relative_to(root):
                    raise WorkdirError(
                        f"{where}: {rel} is a link leading outside {root} (to {target}); copy "
                        f"what it points to into the directory, or --exclude {rel}"
                    )
                info = tarfile.TarInfo(rel)
                info.type = tarfile.SYMTYPE
                info.linkname = os.path.relpath(target, path.parent)
                tar.addfile(info)
            elif path.is_dir():
                tar.add(path, rel, recursive=False)
            elif path.is_file():
                total += path.stat().st_size
                if total > MAX_UNPACKED_BYTES:
                    raise WorkdirError(
                        f"{where}: more than {MAX_UNPACKED_BYTES >> 20} MiB in {root}; leave data "
                        "and outputs out with --exclude PATTERN (read data from a path the "
                        "service can see instead)"
                    )
                tar.add(path, rel, recursive=False)
            else:
                raise WorkdirError(
                    f"{where}: {rel} is neither a file, a directory nor a link (a socket or a "
                    f"device); --exclude {rel}"
                )
    data = buffer.getvalue()
    if len(data) > MAX_ARCHIVE_BYTES:
        raise WorkdirError(
            f"{where}: {root} packs to {len(data) >> 20} MiB, more than the "
            f"{MAX_ARCHIVE_BYTES >> 20} MiB an upload may be; --exclude data and outputs"
        )
    return data


def _checked(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, refused at the first that breaks a rule (before any is written); the
    declared sizes bound what extraction can write, so a compression bomb stops here."""
    where = "upload"
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:
        name = member.name
        if len(members) >= MAX_FILES:
            raise WorkdirError(f"{where}: more than {MAX_FILES:,} entries; send fewer files")
        parts = name.split("/")
        if (
            not name
            or len(name) > MAX_PATH_CHARS
            or "\0" in name
            or name.startswith("/")
            or ".." in parts
            or (len(name) > 1 and name[1] == ":")
        ):
            raise WorkdirError(
                f"{where}: the entry {name!r:.120} is not a relative path inside the directory "
                "(absolute, '..', or too long); send the directory's own files only"
            )
        _text(name, where)
        if member.issym():
            link = member.linkname
            inside = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
            if link.startswith("/") or inside == ".." or inside.startswith("../"):
                raise WorkdirError(
                    f"{where}: the link {name!r:.120} leads outside the directory (to "
                    f"{link!r:.120}); send what it points to instead"
                )
        elif not (member.isreg() or member.isdir()):
            raise WorkdirError(
                f"{where}: the entry {name!r:.120} is neither a file, a directory nor a link "
                "(a hard link, device or pipe); send regular files only"
            )
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise WorkdirError(
                f"{where}: more than {MAX_UNPACKED_BYTES >> 20} MiB once unpacked; send less"
            )
        members.append(member)
    return members


def unpack(data: bytes, root: Path) -> Snapshot:
    """Check an uploaded archive and keep it unpacked under `root`, named by its digest; the
    same upload twice is kept once. Nothing is written when it is refused, and a snapshot
    appears whole or not at all."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise WorkdirError(
            f"upload: {len(data)} bytes, more than {MAX_ARCHIVE_BYTES} (received: {len(data)})"
        )
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = _checked(tar)
            target = snapshot_dir(root, digest)
            if not target.is_dir():
                root.mkdir(parents=True, exist_ok=True)
                incoming = root / f".incoming-{secrets.token_hex(8)}"
                try:
                    tar.extractall(incoming, members=members, filter="data")
                    try:
                        incoming.rename(target)
                    except OSError:  # the same upload, unpacked meanwhile
                        if not target.is_dir():
                            raise
                finally:
                    shutil.rmtree(incoming, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise WorkdirError(
            "upload: not a gzip-compressed tar archive of a directory, or a damaged one "
            f"({type(exc).__name__}: {str(exc)[:120]}); send what `easgd submit "
            "--working-dir` sends"
        ) from None
    files = sum(1 for m in members if not m.isdir())
    return Snapshot(digest, files, sum(m.size for m in members))


def code_root() -> Path:
    """Where the service keeps uploaded working directories."""
    return home() / "code"


def snapshot_dir(root: Path, code: str) -> Path:
    return root / code.replace(":", "-")


def copy_into(root: Path, code: str, destination: Path) -> None:
    """A job's own copy of the snapshot, made once (a relaunch keeps what the first attempt
    left in it)."""
    if destination.is_dir():
        return
    source = snapshot_dir(root, code)
    if not source.is_dir():
        raise WorkdirError(
            f"script.code: no uploaded working directory {code}; upload it again with easgd "
            "submit --working-dir"
        )
    partial = destination.with_name(destination.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, symlinks=True)
    partial.rename(destination)
