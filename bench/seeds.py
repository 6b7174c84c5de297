"""How much the time-to-target comparison depends on the seed: `sync` and `eamsgd` with the
benchmark's settings (bench.tune's choice) on several seeds, steps to the target.

    python -m bench.seeds [--seeds 1,2,3,4,5,7] [--out bench/results/seeds.json]

Steps to target do not depend on the network (the same arithmetic runs on loopback and on the
slow link), so the runs go on loopback; with the median step costs that bench.run measured
(bench/results/bench.json) they give the time ratio each seed would have had on each network.
Runs are named by their configuration, so a setting an earlier call already trained is not
trained again (the tuner's runs are sweep trials, named by their jobs: they are not reused here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.harness import (
    WORKLOADS,
    communicated,
    label_for,
    outcome,
    train_missing,
    tuned_settings,
    write_timed,
)
from db.store import Store

ALGOS = ("sync", "eamsgd")


def time_ratios(steps: dict, costs: dict, seeds: list[int]) -> dict:
    """Training time to target of eamsgd over sync's, per seed, from the step counts and the
    median cost of a communication and a local step (eamsgd communicates on steps 1, 11, 21...)."""
    s_comm = costs["sync"]["median_comm_step_ms"]
    e_comm, e_local = (costs["eamsgd"][k] for k in ("median_comm_step_ms", "median_local_step_ms"))
    out = {}
    for seed in seeds:
        n_sync, n_eam = steps["sync"][seed], steps["eamsgd"][seed]
        if not n_sync or not n_eam:
            out[seed] = None
            continue
        comm = sum(communicated("eamsgd", step) for step in range(1, n_eam + 1))
        out[seed] = round((comm * e_comm + (n_eam - comm) * e_local) / (n_sync * s_comm), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.seeds")
    p.add_argument("--seeds", default="1,2,3,4,5,7")
    p.add_argument("--workloads", default="lenet,mlp")
    p.add_argument("--out", default="bench/results/seeds.json")
    p.add_argument("--bench", default="bench/results/bench.json", help="step costs")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    Store().init()
    work = Path(args.out).parent / "seeds-work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    settings = tuned_settings()
    bench = json.loads(Path(args.bench).read_text()) if Path(args.bench).exists() else {}
    result: dict = {"seeds": seeds, "workloads": {}}
    for wl in args.workloads.split(","):
        target = WORKLOADS[wl]["target"]
        labels = {(a, s): label_for(wl, a, settings[wl][a], s) for a in ALGOS for s in seeds}
        dirs = train_missing(
            {label: (wl, a, settings[wl][a], s) for (a, s), label in labels.items()}, work
        )
        steps = {
            a: {s: outcome(dirs[labels[(a, s)]], a, target)["steps_to_target"] for s in seeds}
            for a in ALGOS
        }
        ratios = [
            steps["eamsgd"][s] / steps["sync"][s]
            for s in seeds
            if steps["eamsgd"][s] and steps["sync"][s]
        ]
        result["workloads"][wl] = {
            "target": target,
            "steps_to_target": steps,
            "eamsgd_over_sync_steps": [round(r, 3) for r in ratios],
            "median_ratio": round(statistics.median(ratios), 3) if ratios else None,
            "time_ratio_by_network": {
                net: time_ratios(steps, by_wl[wl], seeds)
                for net, by_wl in bench.get("results", {}).items()
                if all(a in by_wl.get(wl, {}) for a in ALGOS)
            },
        }
        print(f"seeds: {wl}: {json.dumps(result['workloads'][wl])}", flush=True)
    write_timed(args.out, result, started, "seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
