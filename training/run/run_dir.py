"""The run directory protocol: where a run lives, what it never overwrites, and its config.yaml.

Rank 0 decides and every rank follows (the decision is broadcast), so a refused `--out` stops
all ranks with the same one line. config.yaml is replaced atomically: a reader (the UI, a
resume) never sees half of it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml

from training.schema import ExperimentConfig


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def prepare_run_dir(out: str | None, resume: str | None) -> tuple[Path, bool]:
    """Rank 0 decides where the run lives, refusing to overwrite another run."""
    from db.settings import runs_dir

    if resume:
        d = Path(resume).expanduser().resolve()
        if not (d / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume: {d} is not a run directory (no config.yaml)")
        return d, True
    d = Path(out).expanduser().resolve() if out else runs_dir() / new_run_id()
    if (d / "metrics.jsonl").exists() or (d / "config.yaml").exists():
        raise FileExistsError(
            f"--out: {d} already holds a run; resume it with --resume {d}, or choose a new --out"
        )
    return d, False


def write_config(run_dir: Path, config: ExperimentConfig) -> None:
    """Written on resume too: --set may have changed values (training.max_steps, say)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    tmp.replace(run_dir / "config.yaml")
