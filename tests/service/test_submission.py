"""Turning a request into a job: where `data.path` may point, and what a refusal gives away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.submission import prepare
from training.schema import ConfigError

OUTSIDE = (
    "data.path: outside the allowed data directories (EASGD_DATA_DIRS); put the file in one of them"
)


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for d in (allowed, outside):
        d.mkdir()
        np.savez(d / "real.npz", x=np.zeros((20, 4), "float32"), y=np.arange(20) % 2)
    return allowed.resolve(), outside.resolve()


def _refusal(path: str, allowed: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        prepare({"data": {"dataset": "npz", "path": path}}, data_dirs=[allowed])
    assert len(exc.value.problems) == 1
    return exc.value.problems[0]


def test_outside_refused_alike_whether_the_file_exists_or_not(dirs):
    allowed, outside = dirs
    existing = _refusal(str(outside / "real.npz"), allowed)
    missing = _refusal(str(outside / "missing.npz"), allowed)
    assert existing.startswith(OUTSIDE + " (received: ") and missing.startswith(OUTSIDE)
    assert existing.split(" (received: ")[0] == missing.split(" (received: ")[0] == OUTSIDE
    for line in (existing, missing):
        assert str(allowed) not in line  # the service's directories stay private


@pytest.mark.parametrize(
    "make_path",
    [
        lambda allowed, outside: str(allowed / ".." / "outside" / "real.npz"),
        lambda allowed, outside: str(allowed / ".." / "outside" / "missing.npz"),
        lambda allowed, outside: "../../../../../../../../etc/passwd",
        lambda allowed, outside: "/etc/passwd",
        lambda allowed, outside: "~root/.ssh/id_rsa",
        lambda allowed, outside: "~no-such-user-easgd/x.npz",
    ],
    ids=["dotdot-existing", "dotdot-missing", "relative-traversal", "absolute", "home", "no-user"],
)
def test_traversal_refused_as_outside(dirs, make_path):
    allowed, outside = dirs
    assert _refusal(make_path(allowed, outside), allowed).startswith(OUTSIDE)


def test_symlink_out_of_the_directory_refused(dirs):
    allowed, outside = dirs
    (allowed / "link.npz").symlink_to(outside / "real.npz")
    (allowed / "dangling.npz").symlink_to(outside / "missing.npz")
    (allowed / "loop.npz").symlink_to(allowed / "loop.npz")
    assert _refusal(str(allowed / "link.npz"), allowed).startswith(OUTSIDE)
    assert _refusal(str(allowed / "dangling.npz"), allowed).startswith(OUTSIDE)
    assert _refusal(str(allowed / "loop.npz"), allowed).startswith("data.path: no such file")


def test_inside_checked_for_existence_then_frozen_resolved(dirs):
    allowed, outside = dirs
    missing = _refusal(str(allowed / "missing.npz"), allowed)
    assert missing.startswith("data.path: no such file; give an existing .npz file (received: ")
    (allowed / "inner").mkdir()
    (allowed / "inner" / "link.npz").symlink_to(allowed / "real.npz")
    cfg = prepare(
        {"data": {"dataset": "npz", "path": str(allowed / "inner" / ".." / "inner" / "link.npz")}},
        data_dirs=[allowed],
    ).config
    assert cfg.data.path == str(allowed / "real.npz")
