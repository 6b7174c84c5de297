"""Turning a request into a job: the training schema validates it, `data.path` must lie in the
service's data directories, and the configuration is frozen (every default filled in, the data
path resolved) before anything is queued. And back: a job's stored configuration, typed again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.entities import JobRecord
from service import workdir
from training.schema import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    load_yaml_text,
    parse_config,
    topology_problem,
    warnings_for,
)


@dataclass
class Prepared:
    config: ExperimentConfig
    warnings: list[str]

    @property
    def frozen(self) -> dict[str, Any]:
        return self.config.to_dict()


def prepare(
    config: dict[str, Any] | str | None,
    overrides: list[str] | None = None,
    workers: int | None = None,
    data_dirs: list[Path] | None = None,
    name: str | None = None,
    try_code: bool = True,
) -> Prepared:
    """Raises ConfigError with one line per problem, each naming the field. With `try_code`, a
    configuration's own model and data are also tried (seconds: TensorFlow starts)."""
    data = load_yaml_text(config, "config") if isinstance(config, str) else (config or {})
    if not isinstance(data, dict):
        raise ConfigError([f"config: expected a mapping of sections (received: {data!r:.80})"])
    data = apply_overrides(data, list(overrides or []))
    if workers is not None:
        data = apply_overrides(data, [f"resources.workers={workers}"])
    if name is not None:
        data = {**data, "name": name}  # the job's name is its run's name
    cfg = parse_config(data, data_dirs)
    if cfg.code is not None:
        snapshot = workdir.snapshot_dir(workdir.code_root(), cfg.code)
        if not snapshot.is_dir():
            raise ConfigError(
                [
                    f"code: this service holds no working directory {cfg.code}; upload it first "
                    f"(PUT /code, or easgd submit --working-dir DIR) (received: {cfg.code})"
                ]
            )
        hiding = sorted(p.name for p in snapshot.iterdir() if p.name.removesuffix(".py") in OURS)
        if hiding:
            raise ConfigError(
                [
                    f"code: the working directory's {hiding[0]} would hide this project's "
                    f"package of that name from the job; rename it (received: {', '.join(hiding)})"
                ]
            )
    if try_code and (cfg.model.builder or cfg.data.loader):
        check_user_code(cfg)
    # A job runs on exactly resources.workers ranks: a mixing matrix for another number fails.
    if (problem := topology_problem(cfg, cfg.resources.workers)) is not None:
        raise ConfigError([problem])
    return Prepared(cfg, warnings_for(cfg))


CHECK_SECONDS = 120
# This project's packages: a working directory's module of the same name would shadow them.
OURS = frozenset({"training", "db", "service", "ui"})
SECRET_ENV = re.compile(r"^EASGD_\w*TOKEN$")


def check_user_code(cfg: ExperimentConfig) -> None:
    """Try the configuration's own model and data (training.zoo.check) in a scratch copy of its
    working directory, with the interpreter the ranks will use; ConfigError in one line if they
    fail. The copy keeps whatever the code writes away from the kept snapshot."""
    field = "model.builder" if cfg.model.builder else "data.loader"
    with tempfile.TemporaryDirectory(prefix="easgd-check-") as scratch:
        cwd = Path(scratch) / "code"
        try:
            if cfg.code is not None:
                snapshot = workdir.snapshot_dir(workdir.code_root(), cfg.code)
                shutil.copytree(snapshot, cwd, symlinks=True)
            else:
                cwd.mkdir()
        except OSError as exc:
            raise ConfigError(
                [f"{field}: the service could not copy the working directory to try it ({exc})"]
            ) from None
        env = {k: v for k, v in os.environ.items() if not SECRET_ENV.match(k)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd), env.get("PYTHONPATH")) if p)
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        try:
            done = subprocess.run(
                [sys.executable, "-m", "training.zoo.check"],
                input=json.dumps(cfg.to_dict()),
                capture_output=True,
                text=True,
                cwd=cwd,
                env=env,
                timeout=CHECK_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                [
                    f"{field}: trying the model and data took more than {CHECK_SECONDS} s; "
                    "make the loader quicker (or smaller) to start"
                ]
            ) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0:
        reason = lines[-1] if lines and done.returncode == 2 else None
        if reason is None:
            tail = done.stderr.strip().splitlines()
            reason = (
                f"{field}: trying the model and data failed (exit {done.returncode}): "
                f"{tail[-1][:300] if tail else 'no output'}"
            )
        raise ConfigError([reason])


def stored_config(job: JobRecord) -> ExperimentConfig:
    """The configuration a job was queued with, typed, for everything that plans or launches it.

    It was valid when queued, but a later version of the schema (or a data file gone since) may
    refuse it: the ConfigError is then one line, which the job fails with.
    """
    try:
        return parse_config(job.config)
    except ConfigError as exc:
        raise ConfigError(
            [
                f"configuration: job {job.id}'s stored configuration is refused now (by this "
                "version's schema, or a file it names is gone); submit the job again with a "
                f"valid one (received: {'; '.join(exc.problems)})"
            ]
        ) from None
