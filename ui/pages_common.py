"""Small helpers several pages share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from db.entities import RunRecord
from ui.shaping import config_of


def run_config(run: RunRecord) -> dict[str, Any]:
    """The run's resolved configuration: its config.yaml when the directory is here, else the
    parameters the store kept."""
    if run.run_dir:
        path = Path(run.run_dir) / "config.yaml"
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
    return config_of(run)
