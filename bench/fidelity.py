"""The paper's experiments in small, for docs/fidelity.md.

    python -m bench.fidelity [--seeds 1,2] [--epochs 4] [--out bench/results/fidelity.json]

1. Communication period: easgd, eamsgd, downpour, mdownpour at tau in {1, 4, 16, 64}, several
   seeds, 2 ranks, LeNet-5 on mnist5k: the best center test error of each, and whether a run
   diverged.
2. Workers: easgd (tau = 4) with 1, 2 and 3 ranks.
3. Stability of the elastic rate: easgd with alpha inside and outside the paper's round-robin
   bound (4 - 2 eta) / (4 - eta).

Each setting is an ordinary run in the store (source: bench); a sweep runs many inside one
horovodrun launch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.harness import outcome, sweep
from db.store import Store
from training.algorithms import REGISTRY
from training.config import stability_bound
from training.metrics import read_jsonl

LR = {"easgd": 0.05, "eamsgd": 0.002, "downpour": 0.02, "mdownpour": 0.02}
TAUS = (1, 4, 16, 64)


def _config(algorithm: str, tau: int, seed: int, epochs: float, **optimizer) -> dict:
    opt = {"algorithm": algorithm, "learning_rate": LR[algorithm], "tau": tau, **optimizer}
    # The algorithm's own momentum written out (the schema's default too), so the store has it.
    if "momentum" in REGISTRY[algorithm].defaults:
        opt.setdefault("momentum", REGISTRY[algorithm].defaults["momentum"])
    return {
        "name": f"fidelity-{algorithm}-tau{tau}-s{seed}",
        "seed": seed,
        "tags": {"bench": "fidelity"},
        "data": {"dataset": "mnist5k", "batch_size": 32},
        "model": {"name": "lenet5"},
        "optimizer": opt,
        "training": {"epochs": epochs, "eval_every": 31},
        "checkpoint": {"every": None, "keep": 1},
    }


def _outcome(run_dir: Path, algorithm: str, tau: int) -> dict:
    o = outcome(run_dir, algorithm, tau=tau)
    events = read_jsonl(run_dir / "events.jsonl") if (run_dir / "events.jsonl").exists() else []
    failed = [e["message"] for e in events if e["kind"] == "failed"]
    best, final = o["best_accuracy"], o["final_accuracy"]
    return {
        "run_id": o["run_id"],
        "steps": o["steps"],
        "best_error": None if best is None else round(1 - best, 4),
        "final_error": None if final is None else round(1 - final, 4),
        "diverged": bool(failed) and "diverged" in failed[0],
        "error": failed[0] if failed else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fidelity")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--epochs", type=float, default=4)
    p.add_argument("--out", default="bench/results/fidelity.json")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    Store().init()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(args.out).parent / "fidelity-work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()

    period = [
        (f"{a}-tau{t}-s{s}", _config(a, t, s, args.epochs)) for a in LR for t in TAUS for s in seeds
    ]
    dirs = sweep(period, 2, work, f"fidelity-{stamp}")
    workers = {}
    for ranks in (1, 2, 3):
        d = sweep(
            [(f"workers{ranks}-s{s}", _config("easgd", 4, s, args.epochs)) for s in seeds],
            ranks,
            work,
            f"fidelity-{stamp}",
        )
        workers[ranks] = [_outcome(v, "easgd", 4) for v in d.values()]
    eta = LR["easgd"]
    bound = stability_bound(eta)
    alphas = {"inside": 0.45, "inside, beta > 1": 0.95, "outside": 1.5}
    d = sweep(
        [
            (f"alpha-{a}", _config("easgd", 4, seeds[0], args.epochs, alpha=a))
            for a in alphas.values()
        ],
        2,
        work,
        f"fidelity-{stamp}",
    )
    stability = {
        name: {"alpha": a, **_outcome(d[f"alpha-{a}"], "easgd", 4)} for name, a in alphas.items()
    }

    table: dict = {}
    for label, run_dir in dirs.items():
        algo, tau, _ = label.split("-")
        table.setdefault(algo, {}).setdefault(tau, []).append(
            _outcome(run_dir, algo, int(tau.removeprefix("tau")))
        )
    summary = {
        algo: {
            tau: {
                "best_error_mean": (
                    round(statistics.mean(e), 4)
                    if (e := [o["best_error"] for o in outs if o["best_error"] is not None])
                    else None
                ),
                "best_error_min": min(e) if e else None,
                "diverged": sum(o["diverged"] for o in outs),
                "runs": len(outs),
            }
            for tau, outs in by_tau.items()
        }
        for algo, by_tau in table.items()
    }
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seeds": seeds,
        "epochs": args.epochs,
        "learning_rates": LR,
        "wall_seconds": round(time.time() - started),
        "communication_period": {"summary": summary, "runs": table},
        "workers": {
            str(k): {
                "best_error_mean": round(
                    statistics.mean([o["best_error"] for o in v if o["best_error"] is not None]), 4
                ),
                "runs": v,
            }
            for k, v in workers.items()
        },
        "stability": {"eta": eta, "bound": round(bound, 4), "runs": stability},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_seconds", "workers", "stability")}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
