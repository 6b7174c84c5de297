"""What the benchmark commands stand on: the workloads and their configurations, how runs are
launched (one horovodrun launch for many runs, runs named by their configuration), what a run
came to, read from its metrics.jsonl, and how results are written. The commands themselves
(bench.run, bench.tune, ...) only parse arguments, orchestrate and report."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from db.settings import runs_dir
from training.launch.argv import horovodrun_argv
from training.run.metrics import read_jsonl
from training.schema.algorithms import REGISTRY

RANKS = 2
TAU = 10
SEED = 7
WORKLOADS = {
    "lenet": {
        "model": {"name": "lenet5"},
        "target": 0.95,
        "max_steps": 450,
        "networks": ("loopback",),
        "title": "LeNet-5 on mnist5k (61,706 parameters)",
        "params": 61_706,
    },
    "mlp": {
        "model": {"name": "mlp", "hidden": [1024, 1024]},
        "target": 0.90,
        "max_steps": 300,
        "networks": ("loopback", "slow"),
        "title": "MLP 784-1024-1024-10 on mnist5k (1,863,690 parameters)",
        "params": 1_863_690,
    },
}
NAMES = ("sync", "easgd", "eamsgd", "downpour", "localsgd")
TUNED = Path(__file__).resolve().parent / "results" / "tune.json"
NETNS = "easgd-bench-slow"


def tuned_settings(path: Path = TUNED) -> dict[str, dict[str, dict]]:
    """Each workload's optimizer settings as `python -m bench.tune` chose them (its record), so
    that the benchmark runs exactly what the tuner picked."""
    if not path.is_file():
        raise SystemExit(
            f"bench: {path} is missing: run `make bench-tune` first (it chooses each algorithm's "
            "learning rate)"
        )
    record = json.loads(path.read_text())
    return {wl: v["chosen"] for wl, v in record["workloads"].items()}


def config_for(workload: str, algorithm: str, optimizer: dict, seed: int = SEED) -> dict:
    w = WORKLOADS[workload]
    return {
        "name": f"bench-{workload}-{algorithm}",
        "seed": seed,
        "tags": {"bench": "run", "workload": workload},
        "data": {"dataset": "mnist5k", "batch_size": 32},
        "model": w["model"],
        "optimizer": optimizer,
        "training": {"epochs": 100, "max_steps": w["max_steps"], "eval_every": 10},
        "checkpoint": {"every": None, "keep": 1},
        "resources": {"workers": RANKS},
    }


def communicated(algorithm: str, step: int, tau: int = TAU) -> bool:
    """Whether 1-based step `step` (metrics.jsonl counts from 1) ran a collective: the
    algorithm's schedule in the registry."""
    return bool(REGISTRY[algorithm].communicates(step - 1, tau))


def _ms(values: list[float], how) -> float | None:
    return round(1000 * how(values), 3) if values else None


def outcome(run_dir: Path, algorithm: str, target: float | None = None, tau: int = TAU) -> dict:
    """Every figure the benchmarks report about one run, from its metrics.jsonl; each command
    keeps those it needs. A run that wrote nothing (it failed first) has None for them.

    Train time is the sum of the steps' own durations, so that no algorithm is charged for how
    often the benchmark evaluates it. An evaluation whose accuracy was not finite (written as
    null) is no evaluation."""
    path = run_dir / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    steps = [r for r in rows if r["step"] >= 1 and "step_time" in r]
    evals = [r for r in rows if r.get("center_accuracy") is not None]
    timed = steps[1:]
    comm = [r["step_time"] for r in timed if communicated(algorithm, r["step"], tau)]
    local = [r["step_time"] for r in timed if not communicated(algorithm, r["step"], tau)]
    # The first step traces and builds the training function, a one-off cost of seconds whatever
    # the algorithm; it is counted as a typical step of its kind (it communicates).
    train_time, cumulative = 0.0, {}
    for r in steps:
        if r is steps[0] and comm:
            train_time += statistics.median(comm)
        else:
            train_time += r["step_time"]
        cumulative[r["step"]] = train_time
    reached, curve = None, []
    for r in evals:
        t = cumulative.get(r["step"], 0.0)
        curve.append([r["step"], round(t, 4), r.get("bytes_sent", 0.0), r["center_accuracy"]])
        if reached is None and target is not None and r["center_accuracy"] >= target:
            reached = (r["step"], t)
    last = steps[-1] if steps else None
    return {
        "steps": last["step"] if last else 0,
        "bytes_per_step": last["bytes_sent"] / last["step"] if last else None,
        "comm_seconds": last["comm_seconds"] if last else None,
        "first_step_seconds": round(steps[0]["step_time"], 3) if steps else None,
        "mean_comm_step_ms": _ms(comm, statistics.mean),
        "median_comm_step_ms": _ms(comm, statistics.median),
        "mean_local_step_ms": _ms(local, statistics.mean),
        "median_local_step_ms": _ms(local, statistics.median),
        "train_seconds": round(train_time, 3),
        "target": target,
        "steps_to_target": reached[0] if reached else None,
        "seconds_to_target": round(reached[1], 3) if reached else None,
        "final_accuracy": evals[-1]["center_accuracy"] if evals else None,
        "best_accuracy": max((r["center_accuracy"] for r in evals), default=None),
        "curve": curve,
        "run_id": run_dir.name,
    }


def horovodrun_command(ranks: int, args: list[str], network: Any = "loopback") -> list[str]:
    """This machine's ranks over loopback, running this Python with `args` (through
    training.launch.argv, so that benchmarks start runs as the service starts jobs); on the "slow"
    network, inside the namespace `slow_network` made; given `NamespaceHosts`
    (bench/namespace_hosts.py), one rank on each of them, each behind its own limited link."""
    if not isinstance(network, str):
        hosts = dict.fromkeys(network.addresses[:ranks], 1)
        return horovodrun_argv(
            ranks,
            [sys.executable, *args],
            hosts,
            network_interface=network.interface,
            ssh_identity_file=str(network.key),
        )
    cmd = horovodrun_argv(ranks, [sys.executable, *args])
    return ["ip", "netns", "exec", NETNS, *cmd] if network == "slow" else cmd


def sweep(
    entries: list[tuple[str, dict]],
    ranks: int,
    work: Path,
    prefix: str,
    network: Any = "loopback",
) -> dict[str, Path]:
    """Run each (label, config) as an ordinary run, all inside one horovodrun launch (TensorFlow
    and Horovod start once); returns each label's run directory, named `{prefix}-{label}`."""
    plan, dirs = [], {}
    for label, cfg in entries:
        cfg_path = work / f"{label}.yaml"
        cfg["resources"] = {**cfg.get("resources", {}), "workers": ranks}
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        out = runs_dir() / f"{prefix}-{label}"
        plan.append({"config": str(cfg_path), "out": str(out)})
        dirs[label] = out
    plan_path = work / f"plan-{ranks}-{len(list(work.glob('plan-*.json')))}.json"
    plan_path.write_text(json.dumps(plan))
    cmd = horovodrun_command(ranks, ["-m", "bench.sweep", str(plan_path)], network)
    with (work / f"{plan_path.stem}.log").open("w") as log:
        subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    return dirs


def label_for(workload: str, algorithm: str, optimizer: dict, seed: int) -> str:
    """A run's name from its whole configuration, so that a setting already trained is reused
    (bench.seeds can be rerun with more seeds and trains only what is new)."""
    cfg = json.dumps(config_for(workload, algorithm, optimizer, seed=seed), sort_keys=True)
    return f"{workload}-{algorithm}-s{seed}-{hashlib.sha1(cfg.encode()).hexdigest()[:10]}"


def train_missing(entries: dict[str, tuple[str, str, dict, int]], work: Path) -> dict[str, Path]:
    """Train, in one sweep, each (workload, algorithm, optimizer, seed) whose run does not exist
    yet; returns every label's run directory."""
    dirs = {label: runs_dir() / f"tune-{label}" for label in entries}
    new = [
        (label, config_for(*entries[label][:3], seed=entries[label][3]))
        for label, d in dirs.items()
        if not d.exists()
    ]
    if new:
        sweep(new, RANKS, work, "tune")
    return dirs


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


def slow_network() -> str | None:
    """A namespace whose loopback is limited to 100 Mbit/s, or the reason it cannot be made."""
    if os.geteuid() != 0:
        return "not root: a network namespace needs CAP_NET_ADMIN"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "iproute2 (ip, tc) is not installed"
    drop_slow_network()
    steps = [
        ["ip", "netns", "add", NETNS],
        ["ip", "-n", NETNS, "link", "set", "lo", "mtu", "9000", "up"],
        [
            "ip",
            "netns",
            "exec",
            NETNS,
            "tc",
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "tbf",
            "rate",
            "100mbit",
            "burst",
            "256kb",
            "latency",
            "100ms",
        ],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            drop_slow_network()
            return f"{' '.join(cmd)} failed: {r.stderr.strip()}"
    return None


def drop_slow_network() -> None:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def goal_lines(goals: list[dict]) -> list[str]:
    """A benchmark's goals as a Markdown table (met: yes, no, or - where none is set)."""
    lines = ["## Goals", "", "| goal | measured | met |", "| --- | --- | --- |"]
    for g in goals:
        met = "-" if g["met"] is None else ("yes" if g["met"] else "no")
        lines.append(f"| {g['goal']} | {g['measured']} | {met} |")
    return lines


def section_lines(title: str, section: dict | None) -> tuple[list[str], bool]:
    """A section's heading, and whether it has figures: none when it was not asked for, a
    line saying why when it was skipped."""
    if not section:
        return [], False
    lines = [f"## {title}", ""]
    if "skipped" in section:
        return [*lines, f"Not run: {section['skipped']}", ""], False
    return lines, True
