"""The center server's benchmark: the asynchronous forms and backup workers against the
synchronous ones, with a straggler, on loopback without one, and on a slow network.

    python -m bench.asynchronous [--sections stragglers,overhead,slow] [--repeats 2]
                                 [--out bench/results/asynchronous.json]

- stragglers: LeNet-5 on mnist5k, 3 ranks, rank 2 three times slower (resources.slow_ranks):
  synchronous SGD, the same with one backup worker, blocking EAMSGD and asynchronous EAMSGD.
- overhead: LeNet-5, 2 ranks on loopback, no straggler: EAMSGD blocking against asynchronous,
  alternating, `--repeats` times each; the amortized step (every step's own duration, the
  exchanges' waits included, the first step excluded).
- slow: the 1.9M-parameter MLP, 2 ranks in a network namespace limited to 100 Mbit/s: synchronous
  SGD, blocking EAMSGD and asynchronous EAMSGD, with float32 and with float16 messages.

Each algorithm runs with the learning rate `python -m bench.tune` chose for it (bench/results/
tune.json) and its own horovodrun launch. Time to a target is wall-clock time on rank 0 from its
first step to the evaluation that first reached it: a straggler's cost is the time the others
spend waiting, which a sum of step durations would hide from an asynchronous run. Evaluations
pause rank 0 alone in every algorithm (the same `eval_every` for all); in the asynchronous ones
the other workers go on meanwhile, as they would with evaluation done elsewhere.

Writes the JSON, a Markdown table beside it and a plot of center accuracy against time with the
straggler (stragglers.png).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from bench.harness import (
    config_for,
    drop_slow_network,
    goal_lines,
    horovodrun_command,
    section_lines,
    slow_network,
    tuned_settings,
    write_timed,
)
from db.settings import runs_dir
from db.store import Store
from training.run.metrics import read_jsonl

SECTIONS = ("stragglers", "overhead", "slow")
SLOW_FACTOR = 3.0


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def settings(workload: str) -> dict[str, dict]:
    tuned = tuned_settings()[workload]
    return {
        "sync": tuned["sync"],
        "sync_backup": {**tuned["sync"], "backup_workers": 1},
        "eamsgd": tuned["eamsgd"],
        "eamsgd_async": {**tuned["eamsgd"], "asynchronous": True},
    }


def launch(
    label: str,
    cfg: dict,
    ranks: int,
    work: Path,
    network: str = "loopback",
    env: dict | None = None,
) -> Path:
    cfg = {**cfg, "name": f"asynchronous-{label}", "resources": {**cfg["resources"]}}
    cfg["resources"]["workers"] = ranks
    path = work / f"{label}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = runs_dir() / f"asynchronous-{work.name}-{label}"
    cmd = horovodrun_command(
        ranks, ["-m", "training", "--config", str(path), "--out", str(out)], network
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.time()
    with (work / f"{label}.log").open("w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    say(f"{label}: exit {code} in {time.time() - t0:.0f} s")
    return out


def figures(run_dir: Path, target: float) -> dict:
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    steps = [r for r in rows if r["step"] >= 1 and "step_time" in r]
    evals = [r for r in rows if r.get("center_accuracy") is not None]
    reached = next((r for r in evals if r["center_accuracy"] >= target), None)
    events = read_jsonl(run_dir / "events.jsonl") if (run_dir / "events.jsonl").exists() else []
    summary = [e["message"] for e in events if e["kind"] in ("asynchronous", "backup_workers")]
    step_times = [r["step_time"] for r in steps[1:]]
    return {
        "run_id": run_dir.name,
        "steps": steps[-1]["step"] if steps else 0,
        "target": target,
        "seconds_to_target": round(reached["wall_time"], 3) if reached else None,
        "steps_to_target": reached["step"] if reached else None,
        "final_accuracy": evals[-1]["center_accuracy"] if evals else None,
        "wall_seconds": round(evals[-1]["wall_time"], 3) if evals else None,
        "mean_step_ms": round(1000 * statistics.mean(step_times), 3) if step_times else None,
        "bytes_per_step": rows[-1]["bytes_sent"] / rows[-1]["step"] if steps else None,
        "wait_seconds": rows[-1].get("wait_seconds") if rows else None,
        "server_summary": summary[-1] if summary else None,
        "curve": [[r["step"], round(r["wall_time"], 3), r["center_accuracy"]] for r in evals],
    }


def stragglers(work: Path) -> dict:
    out = {}
    for name, opt in settings("lenet").items():
        cfg = config_for("lenet", name, opt)
        cfg["training"] = {"epochs": 100, "max_steps": 600, "eval_every": 20}
        cfg["resources"] = {"slow_ranks": {2: SLOW_FACTOR}}
        out[name] = figures(launch(f"stragglers-{name}", cfg, 3, work), 0.95)
    return out


def overhead(work: Path, repeats: int) -> dict:
    """Blocking EAMSGD, and the asynchronous form with its server in a thread of rank 0 and in a
    child process, in turn, `repeats` times."""
    variants = {
        "eamsgd": ("eamsgd", None),
        "eamsgd_async": ("eamsgd_async", {"EASGD_CENTER_MODE": "thread"}),
        "eamsgd_async_process": ("eamsgd_async", {"EASGD_CENTER_MODE": "process"}),
    }
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    chosen = settings("lenet")
    for i in range(repeats):
        for key, (name, env) in variants.items():
            cfg = config_for("lenet", name, chosen[name])
            cfg["training"] = {"epochs": 100, "max_steps": 450, "eval_every": 50}
            run_dir = launch(f"overhead-{key}-{i}", cfg, 2, work, env=env)
            runs[key].append(figures(run_dir, 0.95))
    if any(r["mean_step_ms"] is None for v in runs.values() for r in v):
        return {"runs": runs, "failed": "a run wrote no steps: see its log in the work folder"}
    step = {k: statistics.mean(r["mean_step_ms"] for r in v) for k, v in runs.items()}
    return {
        "runs": runs,
        "mean_step_ms": {k: round(v, 3) for k, v in step.items()},
        "async_over_blocking": round(step["eamsgd_async"] / step["eamsgd"], 4),
        "process_over_thread": round(step["eamsgd_async_process"] / step["eamsgd_async"], 4),
    }


def slow(work: Path) -> dict:
    skipped = slow_network()
    if skipped:
        return {"skipped": skipped}
    out = {}
    try:
        chosen = settings("mlp")
        chosen.pop("sync_backup")
        chosen["eamsgd_async_fp16"] = {**chosen["eamsgd_async"], "compression": "float16"}
        for name, opt in chosen.items():
            cfg = config_for("mlp", name.removesuffix("_fp16"), opt)
            out[name] = figures(launch(f"slow-{name}", cfg, 2, work, "slow"), 0.90)
    finally:
        drop_slow_network()
    return out


def _ratio(section: dict, a: str, b: str) -> float | None:
    x, y = section.get(a, {}).get("seconds_to_target"), section.get(b, {}).get("seconds_to_target")
    return None if x is None or not y else round(x / y, 3)


def goals(result: dict) -> list[dict]:
    out = []
    s = result.get("stragglers")
    if s:
        for a, b, limit in (("eamsgd_async", "sync", 0.5), ("sync_backup", "sync", 0.6)):
            r = _ratio(s, a, b)
            out.append(
                {
                    "goal": f"one rank 3x slower, 3 ranks, LeNet: time to 0.95 {a} <= {limit}x {b}",
                    "measured": r,
                    "met": r is not None and r <= limit,
                }
            )
    o = result.get("overhead")
    if o and "failed" not in o:
        r = o["async_over_blocking"]
        out.append(
            {
                "goal": "loopback, no straggler: asynchronous EAMSGD step <= 1.1x blocking "
                "(amortized)",
                "measured": r,
                "met": r <= 1.1,
            }
        )
    w = result.get("slow")
    if w and "skipped" not in w:
        for a, limit in (("eamsgd_async", 0.05), ("eamsgd_async_fp16", 0.05), ("eamsgd", None)):
            r = _ratio(w, a, "sync")
            out.append(
                {
                    "goal": f"MLP on 100 Mbit/s: time to 0.90 {a} / sync"
                    + (f" <= {limit}" if limit else " (reference)"),
                    "measured": r,
                    "met": None if limit is None else (r is not None and r <= limit),
                }
            )
    return out


def markdown(result: dict) -> str:
    lines = [f"# Center server benchmark ({result['when']})", ""]
    titles = {
        "stragglers": "LeNet-5, mnist5k, 3 ranks, rank 2 three times slower (target 0.95)",
        "slow": "MLP 784-1024-1024-10, 2 ranks, 100 Mbit/s (target 0.90)",
    }
    for section, title in titles.items():
        head, ran = section_lines(title, result.get(section))
        lines += head
        if not ran:
            continue
        sec = result[section]
        lines += [
            "| algorithm | seconds to target | steps to target | final accuracy | mean step ms "
            "| bytes/step | rank 0 waited s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, f in sec.items():
            sent = "-" if f["bytes_per_step"] is None else f"{f['bytes_per_step']:.0f}"
            lines.append(
                f"| {name} | {f['seconds_to_target']} | {f['steps_to_target']} | "
                f"{f['final_accuracy']} | {f['mean_step_ms']} | {sent} | {f['wait_seconds']} |"
            )
        lines.append("")
    o = result.get("overhead")
    if o and "failed" not in o:
        lines += [
            "## Loopback, 2 ranks, no straggler",
            "",
            f"Mean step (ms): {o['mean_step_ms']}; asynchronous / blocking = "
            f"{o['async_over_blocking']}; server in a child process / in a thread = "
            f"{o.get('process_over_thread')}",
            "",
        ]
    lines += goal_lines(result["goals"])
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, f in result["stragglers"].items():
        c = f["curve"]
        ax.plot([p[1] for p in c], [p[2] for p in c], label=name)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("wall time on rank 0 (s)")
    ax.set_ylabel("center test accuracy")
    ax.set_ylim(0.5, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("LeNet-5, 3 ranks, rank 2 three times slower")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.asynchronous")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="bench/results/asynchronous.json")
    args = p.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if not 1 <= args.repeats <= 10:
        p.error(f"--repeats: 1 to 10 (received: {args.repeats})")
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    Store().init()
    work = out.parent / "asynchronous-work" / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for section in sections:
        t0 = time.time()
        if section == "stragglers":
            result["stragglers"] = stragglers(work)
        elif section == "overhead":
            result["overhead"] = overhead(work, args.repeats)
        else:
            result["slow"] = slow(work)
        result.setdefault("section_seconds", {})[section] = round(time.time() - t0)
    result["goals"] = goals(result)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_timed(out, result, started, "bench.asynchronous")
    out.with_suffix(".md").write_text(markdown(result))
    if result.get("stragglers"):
        plot(result, out.parent / "stragglers.png")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
