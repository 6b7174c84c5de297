"""A user's working directory, as a job takes it: packed by the client, checked and unpacked by
the service into a content-addressed snapshot, copied into the job's own directory at launch.

Both ends apply the same rules, so that a refusal comes before anything is sent, and again where
it matters (the service trusts no archive): regular files and directories only (the client packs
what a link inside the directory points to, as a file of the link's name); no absolute or `..`
paths, no name twice; at most MAX_FILES entries and MAX_UNPACKED_BYTES; version control, virtual
environments and caches left out. With no link in an archive, nothing extracted can lead out.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
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
    """The directory as a gzip-compressed tar archive, or a WorkdirError saying what to change.
    The same content packs to the same bytes (no time in the gzip header), so an unchanged
    directory uploaded again is kept once."""
    where = "--working-dir"
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise WorkdirError(f"{where}: not a directory (received: {str(directory)!r:.200})")
    root = root.resolve()
    buffer = io.BytesIO()
    try:
        with (
            gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, dereference=True) as tar,
        ):
            _add_all(tar, root, list(excludes or []), where)
    except OSError as exc:  # unreadable, a link loop, a file gone meanwhile
        raise WorkdirError(
            f"{where}: cannot read {getattr(exc, 'filename', None) or root} ({exc.strerror or exc}); "
            "fix its permissions or --exclude it"
        ) from None
    data = buffer.getvalue()
    if len(data) > MAX_ARCHIVE_BYTES:
        raise WorkdirError(
            f"{where}: {root} packs to {len(data) >> 20} MiB, more than the "
            f"{MAX_ARCHIVE_BYTES >> 20} MiB an upload may be; --exclude data and outputs"
        )
    return data


def _add_all(tar: tarfile.TarFile, root: Path, excludes: list[str], where: str) -> None:
    files = total = 0
    for rel, path in _walk(root, excludes):
        _text(rel, where)
        files += 1
        if files > MAX_FILES:
            raise WorkdirError(
                f"{where}: more than {MAX_FILES:,} files in {root}; leave data and outputs "
                "out with --exclude PATTERN"
            )
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                raise WorkdirError(
                    f"{where}: {rel} is a broken link or a link loop; remove it or --exclude {rel}"
                ) from None
            if not target.is_relative_to(root):
                raise WorkdirError(
                    f"{where}: {rel} is a link leading outside {root} (to {target}); copy "
                    f"what it points to into the directory, or --exclude {rel}"
                )
            if target.is_dir():
                raise WorkdirError(
                    f"{where}: {rel} is a link to a directory; uploads hold files only, so "
                    f"--exclude {rel} (its target is uploaded under its own name)"
                )
        if path.is_dir() and not path.is_symlink():
            tar.add(path, rel, recursive=False)
        elif path.is_file():  # a link to a file inside: its content, under the link's name
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
                f"{where}: {rel} is neither a file nor a directory (a socket or a device); "
                f"--exclude {rel}"
            )


# Pax and GNU long-name headers: tarfile reads their bodies whole, so a huge one is refused
# before tarfile sees it.
_EXTENDED = frozenset(b"xgLK")
MAX_HEADER_BYTES = 64 << 10


def _header_size(block: bytes) -> int:
    field = block[124:136]
    if field[0] & 0x80:  # base-256, for sizes beyond 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise WorkdirError("upload: a damaged tar header (its size is not a number)") from None


def _scan(data: bytes) -> None:
    """Walk the decompressed archive's headers as a stream, without tarfile: refuses, before
    anything is kept in memory, more bytes than a snapshot may hold and extended headers larger
    than any real name needs."""
    limit = MAX_UNPACKED_BYTES + (MAX_FILES + 1) * 2 * 512 + MAX_HEADER_BYTES
    seen = 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        while True:
            block = stream.read(512)
            seen += len(block)
            if len(block) < 512 or not block.strip(b"\0"):
                return
            size = _header_size(block)
            if block[156] in _EXTENDED and size > MAX_HEADER_BYTES:
                raise WorkdirError(
                    f"upload: an extended tar header of {size:,} bytes (at most "
                    f"{MAX_HEADER_BYTES:,}); send what `easgd submit --working-dir` sends"
                )
            padded = -(-size // 512) * 512
            seen += padded
            if seen > limit:
                raise WorkdirError(
                    f"upload: more than {MAX_UNPACKED_BYTES >> 20} MiB once unpacked; send less"
                )
            while padded:  # skipped in chunks, never held whole
                chunk = stream.read(min(padded, 1 << 20))
                if not chunk:
                    return
                padded -= len(chunk)


def _checked(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, refused at the first that breaks a rule (before any is written); the
    declared sizes bound what extraction can write, so a compression bomb stops here."""
    where = "upload"
    members: list[tarfile.TarInfo] = []
    names: set[str] = set()
    files: set[str] = set()
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
        if not (member.isreg() or member.isdir()):
            kind = "a link" if member.issym() or member.islnk() else "a device or a pipe"
            raise WorkdirError(
                f"{where}: the entry {name!r:.120} is {kind}; an upload holds regular files and "
                "directories only (easgd submit --working-dir sends what a link points to)"
            )
        clean = name.rstrip("/")
        if clean in names or any(p in files for p in _parents(clean)):
            raise WorkdirError(
                f"{where}: the entry {name!r:.120} comes twice, or lies inside a file; send "
                "each path once"
            )
        names.add(clean)
        if member.isreg():
            files.add(clean)
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise WorkdirError(
                f"{where}: more than {MAX_UNPACKED_BYTES >> 20} MiB once unpacked; send less"
            )
        members.append(member)
    return members


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


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
        _scan(data)
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
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
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
