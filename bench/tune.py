"""The benchmark's learning rates, chosen the same way for every algorithm, as the paper does.

    python -m bench.tune [--workloads lenet,mlp] [--seed 1] [--out bench/results/tune.json]

Every algorithm of `bench.run` is trained over one grid on each workload, on loopback with the
benchmark's ranks, tau, data and step budget, but on a tuning seed (1), not the benchmark's (7),
so that the figures it reports are not the ones the choice was made on. The momentum methods
(`sync` with Nesterov momentum, `eamsgd`) share one grid of (momentum, learning rate), the plain
SGD ones (`easgd`, `downpour`, `localsgd`) another. The choice: the fewest steps to the
workload's target center test accuracy, then the best accuracy; a choice at an end of the grid
widens it by a factor of 2 (`--rounds` times at most). The record it writes (every run's
outcome and the choice) is what `bench.run` reads its settings from. Runs are named by their
configuration and kept in the store, so a rerun trains only new settings.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.harness import (
    NAMES,
    RANKS,
    TAU,
    WORKLOADS,
    label_for,
    outcome,
    train_missing,
    write_timed,
)
from db.store import Store

MOMENTUM_GRID = ((0.99, 0.002), (0.99, 0.005), (0.9, 0.02), (0.9, 0.05), (0.9, 0.1))
SGD_GRID = (0.02, 0.05, 0.1, 0.2)
# What the record keeps of each run tried.
TRIED_FIGURES = ("run_id", "steps_to_target", "best_accuracy", "final_accuracy")


def candidates(algorithm: str) -> list[dict]:
    if algorithm in ("sync", "eamsgd"):
        inner = {"inner": "nesterov"} if algorithm == "sync" else {"tau": TAU}
        return [
            {"algorithm": algorithm, "learning_rate": lr, "momentum": m, **inner}
            for m, lr in MOMENTUM_GRID
        ]
    return [{"algorithm": algorithm, "learning_rate": lr, "tau": TAU} for lr in SGD_GRID]


def choose(tried: list[dict]) -> dict | None:
    ok = [t for t in tried if t["best_accuracy"] is not None]
    if not ok:
        return None
    return min(
        ok,
        key=lambda t: (
            t["steps_to_target"] is None,
            t["steps_to_target"] or 0,
            -t["best_accuracy"],
        ),
    )


def widen(chosen: dict, tried: list[dict]) -> dict | None:
    """When the choice sits at an end of the learning rates tried (at its momentum), the grid did
    not bracket the best: the next candidate goes one factor of 2 further out."""
    momentum = chosen.get("momentum")
    rates = sorted(
        t["optimizer"]["learning_rate"] for t in tried if t["optimizer"].get("momentum") == momentum
    )
    lr = chosen["learning_rate"]
    if len(rates) < 2 or lr not in (rates[0], rates[-1]):
        return None
    return {**chosen, "learning_rate": lr * 2 if lr == rates[-1] else lr / 2}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tune")
    p.add_argument("--workloads", default="lenet,mlp")
    p.add_argument("--algorithms", default=",".join(NAMES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="widenings of the grid at most")
    p.add_argument("--out", default="bench/results/tune.json")
    args = p.parse_args(argv)
    Store().init()
    work = Path(args.out).parent / "tune-work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result: dict = {"seed": args.seed, "ranks": RANKS, "tau": TAU, "workloads": {}}
    for wl in args.workloads.split(","):
        target = WORKLOADS[wl]["target"]
        pending = [(a, opt) for a in args.algorithms.split(",") for opt in candidates(a)]
        by_algo: dict[str, list[dict]] = {}
        for _ in range(1 + args.rounds):
            entries = {
                label_for(wl, a, opt, args.seed): (wl, a, opt, args.seed) for a, opt in pending
            }
            for label, d in train_missing(entries, work).items():
                _, a, opt, _ = entries[label]
                o = outcome(d, a, target)
                by_algo.setdefault(a, []).append(
                    {"optimizer": opt, **{k: o[k] for k in TRIED_FIGURES}}
                )
            pending = []
            for a, tried in by_algo.items():
                best = choose(tried)
                wider = widen(best["optimizer"], tried) if best else None
                if wider:
                    pending.append((a, wider))
            if not pending:
                break
        result["workloads"][wl] = {
            "target": target,
            "chosen": {a: (choose(t) or {}).get("optimizer") for a, t in by_algo.items()},
            "tried": by_algo,
        }
        for algo, tried in by_algo.items():
            print(f"tune: {wl} {algo}: {choose(tried)}", flush=True)
    write_timed(args.out, result, started, "tune")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
