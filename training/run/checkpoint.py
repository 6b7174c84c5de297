"""Checkpoints that resume a run exactly: every rank's worker and optimizer state, the center,
the step (which fixes the data position) and the wall-time offset.

Layout: `checkpoints/step-000200/rank-{r}.npz`, then `meta.json`, written by rank 0 only after
every rank has saved: a checkpoint without `meta.json` is incomplete and is never resumed from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from db.errors import EasgdError


class CheckpointError(EasgdError, RuntimeError):
    exit_code = 1


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:09d}"


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_rank(run_dir: Path, step: int, rank: int, model_vars, optimizer_vars) -> None:
    d = step_dir(run_dir, step)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(model_vars)}
    arrays.update({f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer_vars)})
    _atomic_savez(d / f"rank-{rank}.npz", arrays)


def commit(run_dir: Path, step: int, meta: dict[str, Any], keep: int) -> None:
    """Mark a checkpoint complete (rank 0, after every rank saved) and drop old ones."""
    d = step_dir(run_dir, step)
    tmp = d / "meta.json.tmp"
    tmp.write_text(json.dumps({"step": step, **meta}, indent=1), encoding="utf-8")
    tmp.replace(d / "meta.json")
    complete = sorted(
        p for p in (run_dir / "checkpoints").glob("step-*") if (p / "meta.json").exists()
    )
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    complete = sorted(p for p in root.glob("step-*") if (p / "meta.json").exists())
    if not complete:
        return None
    d = complete[-1]
    return d, json.loads((d / "meta.json").read_text(encoding="utf-8"))


def model_mean(d: Path, workers: int) -> list[np.ndarray]:
    """The mean over the checkpoint's `workers` ranks of each model variable (a run without a
    center resumed with another number of workers starts from it)."""
    total: list[np.ndarray] | None = None
    for rank in range(workers):
        path = d / f"rank-{rank}.npz"
        if not path.exists():
            raise CheckpointError(f"--resume: {path} is missing; the checkpoint is incomplete")
        with np.load(path) as f:
            arrays = [
                f[k]
                for k in sorted(
                    (k for k in f.files if k.startswith("model/")),
                    key=lambda k: int(k.split("/")[1]),
                )
            ]
        total = arrays if total is None else [t + a for t, a in zip(total, arrays)]
    return [t / workers for t in total or []]


def restore_rank(d: Path, rank: int, model_vars, optimizer_vars) -> None:
    path = d / f"rank-{rank}.npz"
    if not path.exists():
        raise CheckpointError(f"--resume: {path} is missing: the checkpoint is incomplete")
    with np.load(path) as f:
        n_model = sum(1 for k in f.files if k.startswith("model/"))
        n_opt = sum(1 for k in f.files if k.startswith("optimizer/"))
        if n_model != len(model_vars) or n_opt != len(optimizer_vars):
            raise CheckpointError(
                f"--resume: {path} holds {n_model} model and {n_opt} optimizer variables, the "
                f"configured run has {len(model_vars)} and {len(optimizer_vars)}; "
                "the configuration changed since the checkpoint"
            )
        for i, v in enumerate(model_vars):
            v.assign(f[f"model/{i}"])
        for i, v in enumerate(optimizer_vars):
            v.assign(f[f"optimizer/{i}"])
