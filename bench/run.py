"""The benchmark: sync, easgd, eamsgd, downpour and localsgd, same data, seed and ranks, on a
compute-bound workload (LeNet-5, 62k parameters) and a communication-bound one (a 784-1024-1024-10
MLP, 1.9M parameters), on loopback and on a 100 Mbit/s network namespace.

    python -m bench.run [--networks loopback,slow] [--workloads lenet,mlp] [--out bench/results]

Writes bench/results/bench.json (every figure), bench.md (the tables and the goals) and PNG plots
of center accuracy against training time and against bytes sent. The runs land in the run store
(source: bench) like any others.

Times: `train time` is the sum of the steps' own durations (evaluations and logging excluded),
so that an algorithm is not charged for how often the benchmark evaluates it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from bench.harness import (
    NAMES,
    RANKS,
    SEED,
    TAU,
    TUNED,
    WORKLOADS,
    config_for,
    drop_slow_network,
    goal_lines,
    horovodrun_command,
    outcome,
    slow_network,
    tuned_settings,
)
from db.settings import runs_dir
from db.store import Store
from training.schema.algorithms import REGISTRY


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def horovodrun(args: list[str], network: str, log: Path) -> int:
    cmd = horovodrun_command(RANKS, args, network)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def plain_reference(cfg_path: Path, stem: Path) -> dict | None:
    """The plain inner optimizer's step and, alternating with it in the same processes, the
    wrapper's non-communication step (bench/plain_step.py): medians in ms."""
    ref = stem.with_suffix(".json")
    code = horovodrun(
        ["-m", "bench.plain_step", str(cfg_path), str(ref)], "loopback", stem.with_suffix(".log")
    )
    if code != 0:
        return None
    m = json.loads(ref.read_text())
    return {
        "plain_ms": round(m["median_step_seconds"] * 1000, 3),
        "wrapped_ms": round(m["wrapped_median_step_seconds"] * 1000, 3),
    }


def bracket(before: dict | None, after: dict | None) -> dict | None:
    """The reference measured just before and just after the run it is compared with, so that
    a change in the machine's load during the run shows in both sides of the ratio."""
    both = [m for m in (before, after) if m]
    if not both:
        return None
    return {
        "plain_ms": round(statistics.mean(m["plain_ms"] for m in both), 3),
        "wrapped_ms": round(statistics.mean(m["wrapped_ms"] for m in both), 3),
        "ab_ratio": round(statistics.mean(m["wrapped_ms"] / m["plain_ms"] for m in both), 4),
        "before": before,
        "after": after,
    }


def describe(optimizer: dict) -> str:
    parts = [f"lr {optimizer['learning_rate']}"]
    if optimizer.get("momentum") is not None:
        parts.append(f"{optimizer.get('inner', 'nesterov')} {optimizer['momentum']}")
    return ", ".join(parts)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def goals(results: dict) -> list[dict]:
    out = []

    def get(net, wl, algo, key):
        return results.get(net, {}).get(wl, {}).get(algo, {}).get(key)

    for net in results:
        for wl in results[net]:
            if wl == "plain":
                continue
            r = ratio(
                get(net, wl, "easgd", "bytes_per_step"), get(net, wl, "sync", "bytes_per_step")
            )
            if r is not None:
                out.append(
                    {
                        "goal": f"bytes/step easgd tau=10 = 1/10 of sync ({net}, {wl})",
                        "measured": round(r, 5),
                        "met": abs(r - 0.1) <= 0.001,
                    }
                )
            ref = results[net].get("plain", {}).get(wl)
            if ref:
                r = ratio(get(net, wl, "eamsgd", "median_local_step_ms"), ref["plain_ms"])
                if r is not None:
                    out.append(
                        {
                            "goal": f"eamsgd non-communication step <= 1.03x plain, in training "
                            f"({net}, {wl})",
                            "measured": round(r, 3),
                            "met": r <= 1.03,
                        }
                    )
                out.append(
                    {
                        "goal": f"the wrapper's non-communication step <= 1.03x plain, "
                        f"alternating in one process ({net}, {wl})",
                        "measured": ref["ab_ratio"],
                        "met": ref["ab_ratio"] <= 1.03,
                    }
                )
    for net, wl, target, limit, where in (
        ("loopback", "lenet", "0.95", 1.0, "LeNet, loopback"),
        ("slow", "mlp", "0.90", 0.15, "MLP, 100 Mbit/s"),
    ):
        r = ratio(
            get(net, wl, "eamsgd", "seconds_to_target"), get(net, wl, "sync", "seconds_to_target")
        )
        out.append(
            {
                "goal": f"time to {target} eamsgd <= {limit}x sync ({where})",
                "measured": None if r is None else round(r, 3),
                "met": r is not None and r <= limit,
            }
        )
    return out


def markdown(result: dict) -> str:
    lines = [
        f"# Benchmark ({result['when']}, {result['machine']})",
        "",
        f"{RANKS} ranks, tau = {TAU}, seed {SEED}, batch 32 per rank, mnist5k; learning rates "
        "chosen per algorithm and workload by `python -m bench.tune` on seed 1. Train time = the "
        "sum of step durations (evaluation excluded; the first step, which builds the training "
        "function, counted as a typical communication step). Step times are medians. "
        "Bytes = payload each rank hands to collectives.",
        "",
    ]
    if result.get("slow_network_skipped"):
        lines += [f"Slow network not run: {result['slow_network_skipped']}", ""]
    for net, by_wl in result["results"].items():
        for wl, by_algo in by_wl.items():
            if wl == "plain":
                continue
            w = WORKLOADS[wl]
            ref = by_wl.get("plain", {}).get(wl)
            reference = (
                f"Plain Keras step of EAMSGD's inner optimizer (reference, median, measured "
                f"just before and after the eamsgd run): {ref['plain_ms']:.2f} ms; the "
                f"wrapper's own non-communication step, alternating with it in one process: "
                f"{ref['wrapped_ms']:.2f} ms ({ref['ab_ratio']:.3f}x)."
                if ref
                else "Plain reference: not measured."
            )
            lines += [
                f"## {w['title']}, {'loopback' if net == 'loopback' else '100 Mbit/s'}",
                "",
                reference,
                "",
                "| algorithm | optimizer | steps | bytes/step | vs sync (theory) | comm step ms | "
                f"local step ms | local / plain | train s | steps to {w['target']} | "
                f"s to {w['target']} | final acc |",
                "|" + " --- |" * 12,
            ]
            sync_bytes = by_algo.get("sync", {}).get("bytes_per_step")
            for algo, f in by_algo.items():
                vs = ratio(f["bytes_per_step"], sync_bytes)
                theory = f"1/{TAU}" if REGISTRY[algo].periodic else "1"
                local = f["median_local_step_ms"]
                vs_text = "-" if vs is None else f"{vs:.4f}"
                # The reference runs EAMSGD's inner optimizer; the others differ.
                plain_ratio = (
                    f"{local / ref['plain_ms']:.3f}" if ref and local and algo == "eamsgd" else "-"
                )
                to_target = f["seconds_to_target"]
                target_text = "not reached" if to_target is None else f"{to_target:.1f}"
                lines.append(
                    f"| {algo} | {describe(f['optimizer'])} | {f['steps']} | "
                    f"{f['bytes_per_step']:,.0f} | {vs_text} ({theory}) | "
                    f"{f['median_comm_step_ms'] or '-'} | {local or '-'} | {plain_ratio} | "
                    f"{f['train_seconds']:.1f} | {f['steps_to_target'] or '-'} | {target_text} | "
                    f"{f['final_accuracy']:.4f} |"
                )
            lines.append("")
    lines += goal_lines(result["goals"])
    return "\n".join(lines) + "\n"


def plots(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for net, by_wl in result["results"].items():
        for wl, by_algo in by_wl.items():
            if wl == "plain":
                continue
            fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
            for algo, f in by_algo.items():
                c = f["curve"]
                axes[0].plot([p[1] for p in c], [p[3] for p in c], label=algo)
                sent = [p for p in c if p[2] > 0]  # a log axis has no room for 0 bytes
                axes[1].plot([p[2] for p in sent], [p[3] for p in sent], label=algo)
            for ax, xl in zip(axes, ("train time (s)", "bytes sent per rank")):
                ax.axhline(WORKLOADS[wl]["target"], color="grey", lw=0.8, ls="--")
                ax.set_xlabel(xl)
                ax.set_ylabel("center test accuracy")
                ax.set_ylim(0, 1)
                ax.grid(alpha=0.3)
            axes[1].set_xscale("log")
            axes[0].legend()
            fig.suptitle(
                f"{WORKLOADS[wl]['title']}, {'loopback' if net == 'loopback' else '100 Mbit/s'}"
            )
            fig.tight_layout()
            path = out / f"{net}-{wl}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(str(path))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run")
    p.add_argument("--networks", default="loopback,slow")
    p.add_argument("--workloads", default="lenet,mlp")
    p.add_argument("--algorithms", default=",".join(NAMES))
    p.add_argument("--out", default="bench/results")
    p.add_argument("--tuned", default=str(TUNED), help="bench.tune's record of the settings")
    p.add_argument(
        "--all-pairs",
        action="store_true",
        help="every workload on every network (the compute-bound one on the slow "
        "network too; about 5 more minutes)",
    )
    args = p.parse_args(argv)
    settings = tuned_settings(Path(args.tuned))
    for wl in args.workloads.split(","):
        for algo in args.algorithms.split(","):
            if algo not in settings.get(wl, {}):
                raise SystemExit(
                    f"bench: {args.tuned} has no setting for {algo} on {wl}: run "
                    f"`python -m bench.tune --workloads {wl} --algorithms {algo}`"
                )
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    Store().init()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    networks = args.networks.split(",")
    skipped = None
    if "slow" in networks:
        skipped = slow_network()
        if skipped:
            say(f"slow network not possible here ({skipped}); running loopback only")
            networks.remove("slow")
    started = time.time()
    results: dict = {}
    try:
        for net in networks:
            results[net] = {"plain": {}}
            for wl in args.workloads.split(","):
                if net not in WORKLOADS[wl]["networks"] and not args.all_pairs:
                    continue
                results[net][wl] = {}
                for algo in args.algorithms.split(","):
                    cfg_path = out / "logs" / f"{net}-{wl}-{algo}.yaml"
                    cfg = config_for(wl, algo, settings[wl][algo])
                    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
                    reference = out / "logs" / f"{net}-{wl}-plain"
                    if algo == "eamsgd":
                        before = plain_reference(cfg_path, Path(f"{reference}-before"))
                    run_dir = runs_dir() / f"bench-{stamp}-{net}-{wl}-{algo}"
                    t0 = time.time()
                    code = horovodrun(
                        [
                            "-m",
                            "training",
                            "--config",
                            str(cfg_path),
                            "--out",
                            str(run_dir),
                            "--source",
                            "bench",
                        ],
                        net,
                        out / "logs" / f"{net}-{wl}-{algo}.log",
                    )
                    if algo == "eamsgd":
                        after = plain_reference(cfg_path, Path(f"{reference}-after"))
                        results[net]["plain"][wl] = bracket(before, after)
                    if code != 0:
                        say(f"{net} {wl} {algo}: failed (exit {code}), see the log")
                        continue
                    f = outcome(run_dir, algo, WORKLOADS[wl]["target"])
                    f["optimizer"] = settings[wl][algo]
                    results[net][wl][algo] = f
                    say(
                        f"{net} {wl} {algo}: {f['steps']} steps in {time.time() - t0:.0f} s, "
                        f"train {f['train_seconds']:.1f} s, to target "
                        f"{f['seconds_to_target']}, final {f['final_accuracy']:.4f}"
                    )
    finally:
        if "slow" in networks:
            drop_slow_network()
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "ranks": RANKS,
        "tau": TAU,
        "seed": SEED,
        "algorithms": settings,
        "workloads": WORKLOADS,
        "slow_network_skipped": skipped,
        "wall_seconds": round(time.time() - started),
        "results": results,
    }
    result["goals"] = goals(results)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "bench.md").write_text(markdown(result))
    result["plots"] = plots(result, out)
    say(
        f"wrote {out / 'bench.json'}, {out / 'bench.md'} and {len(result['plots'])} plots "
        f"in {result['wall_seconds']} s"
    )
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
