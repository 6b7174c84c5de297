"""What the benchmark commands share: Chromium's flags here, how figures are written, and how
many runs go through one horovodrun launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from db.settings import runs_dir
from training.launch import horovodrun_argv

# Without the background-networking flags Chromium keeps calling hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def write_result(out: str | Path, result: dict) -> None:
    """Write the figures as JSON and show them."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


def write_timed(out: str | Path, result: dict, started: float, who: str) -> None:
    """Stamp a result with when it ended and how long it took, and write it as JSON."""
    result["wall_seconds"] = round(time.time() - started)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{who}: wrote {out} in {result['wall_seconds']} s")


def horovodrun_command(ranks: int, args: list[str]) -> list[str]:
    """This machine's ranks over loopback, running this Python with `args` (through
    training.launch, so that benchmarks start runs as the service starts jobs)."""
    return horovodrun_argv(ranks, [sys.executable, *args])


def sweep(entries: list[tuple[str, dict]], ranks: int, work: Path, prefix: str) -> dict[str, Path]:
    """Run each (label, config) as an ordinary run, all inside one horovodrun launch (TensorFlow
    and Horovod start once); returns each label's run directory, named `{prefix}-{label}`."""
    plan, dirs = [], {}
    for label, cfg in entries:
        cfg_path = work / f"{label}.yaml"
        cfg["resources"] = {"workers": ranks}
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        out = runs_dir() / f"{prefix}-{label}"
        plan.append({"config": str(cfg_path), "out": str(out)})
        dirs[label] = out
    plan_path = work / f"plan-{ranks}-{len(list(work.glob('plan-*.json')))}.json"
    plan_path.write_text(json.dumps(plan))
    cmd = horovodrun_command(ranks, ["-m", "bench.sweep", str(plan_path)])
    with (work / f"{plan_path.stem}.log").open("w") as log:
        subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    return dirs
