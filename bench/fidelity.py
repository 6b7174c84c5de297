"""The papers' experiments in small, for docs/algorithms/fidelity.md.

    python -m bench.fidelity [--sections period,workers,stability,tree,consensus]
                             [--seeds 1,2,3,4,5] [--tune-seed 0] [--epochs 3]
                             [--out bench/results/fidelity.json]

LeNet-5 on mnist5k, every setting an ordinary run in the store (source: bench); a sweep runs many
inside one horovodrun launch. Learning rates are tuned per method and tau on the tuning seed
(which is not one of the reported seeds) over a small grid per kind of method, widened at the end
where the best sits until it is bracketed (three more rates at most), then each setting
runs on every reported seed: mean and standard deviation of the best and the final center test
error.

- period: easgd, eamsgd, downpour, mdownpour, mvadownpour, adownpour at tau in {1, 4, 16, 64}.
- workers: easgd and eamsgd at tau = 4 with p in {1, 2, 4}.
- stability: the paper's round-robin map on x^2 / 2 (bench/stability.py), and the real optimizer
  on it (bench/stability_run.py): growth rate against spectral radius.
- tree: tree_easgd against flat easgd at p = 4; consensus: cdsgd against sync and localsgd at
  p = 4 (each where the algorithm exists).
- diloco: DiLoCo (inner AdamW, its own grid) beside easgd, eamsgd and localsgd at p = 4.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from bench.harness import horovodrun_command, outcome, sweep
from bench.stability import analysis, cycle_map, measured_rate, spectral_radius
from db.store import Store
from training.run.metrics import read_jsonl
from training.schema import stability_bound
from training.schema.algorithms import REGISTRY

TAUS = (1, 4, 16, 64)
PERIOD_METHODS = ("easgd", "eamsgd", "downpour", "mdownpour", "mvadownpour", "adownpour")
# One grid per kind: momentum 0.99 (the paper's delta) multiplies the step by about 100.
GRIDS = {
    "plain": (0.02, 0.06, 0.2),
    "momentum": (0.001, 0.003, 0.01),
    "adamw": (0.0005, 0.001, 0.002),
}
MOMENTUM_METHODS = ("eamsgd", "mdownpour", "cdmsgd")
EVAL_EVERY = 31
SECTIONS = ("period", "workers", "stability", "tree", "consensus", "diloco")


WIDEN_ROUNDS = 3


def grid(algorithm: str) -> tuple[float, ...]:
    if REGISTRY[algorithm].inner() == "adamw":
        return GRIDS["adamw"]
    return GRIDS["momentum" if algorithm in MOMENTUM_METHODS else "plain"]


def _error(result: dict) -> float:
    return 1.0 if result["best_error"] is None else result["best_error"]


def best_rate(by_lr: dict[float, dict]) -> float:
    return min((_error(r), lr) for lr, r in by_lr.items())[1]


def next_rate(by_lr: dict[float, dict]) -> float | None:
    """One factor of 3 past the end the best sits at; None when the best is inside (or when it
    scored the same everywhere, where no direction is better than another)."""
    rates = sorted(by_lr)
    best = best_rate(by_lr)
    if len(rates) < 2 or len({_error(r) for r in by_lr.values()}) == 1:
        return None
    if best == rates[-1]:
        return float(f"{best * 3:.2g}")
    if best == rates[0]:
        return float(f"{best / 3:.2g}")
    return None


def config(algorithm: str, tau: int, lr: float, seed: int, epochs: float, **optimizer) -> dict:
    opt = {"algorithm": algorithm, "learning_rate": lr, "tau": tau, **optimizer}
    # The algorithm's own momentum written out, so that the store records it.
    if "momentum" in REGISTRY[algorithm].defaults:
        opt.setdefault("momentum", REGISTRY[algorithm].defaults["momentum"])
    return {
        "name": f"fidelity-{algorithm}-tau{tau}-lr{lr:g}-s{seed}",
        "seed": seed,
        "tags": {"bench": "fidelity"},
        "data": {"dataset": "mnist5k", "batch_size": 32},
        "model": {"name": "lenet5"},
        "optimizer": opt,
        "training": {"epochs": epochs, "eval_every": EVAL_EVERY},
        "checkpoint": {"every": None, "keep": 1},
    }


def result_of(run_dir: Path, algorithm: str, tau: int) -> dict:
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


def summary(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds; a diverged run counts as error 1 (it learned
    nothing it kept), and how many diverged is said."""
    out: dict = {"runs": len(runs), "diverged": sum(r["diverged"] for r in runs)}
    for key in ("best_error", "final_error"):
        values = [1.0 if r[key] is None else r[key] for r in runs]
        out[f"{key}_mean"] = round(statistics.mean(values), 4) if values else None
        out[f"{key}_std"] = round(statistics.stdev(values), 4) if len(values) > 1 else 0.0
    return out


class Runner:
    """Sweeps grouped by world size, each setting labelled; results by label."""

    def __init__(self, work: Path, epochs: float):
        self.work, self.epochs = work, epochs
        self.stamp = time.strftime("%Y%m%d-%H%M%S")

    def run(self, ranks: int, settings: dict[str, tuple[str, int, float, int, dict]]) -> dict:
        # Horovod registers Tree EASGD's process sets when it starts, so runs that need groups
        # get a launch of their own, one per group size.
        launches: dict = {}
        for label, (a, tau, lr, seed, extra) in settings.items():
            key = extra.get("group_size", 0) if "group_size" in REGISTRY[a].fields else None
            launches.setdefault(key, []).append(
                (label, config(a, tau, lr, seed, self.epochs, **extra))
            )
        dirs: dict[str, Path] = {}
        for entries in launches.values():
            dirs.update(sweep(entries, ranks, self.work, f"fidelity-{self.stamp}"))
        return {
            label: result_of(dirs[label], a, tau) for label, (a, tau, _, _, _) in settings.items()
        }

    def tune(self, ranks: int, candidates: dict[str, tuple[str, int, dict]], seed: int) -> dict:
        """The learning rate with the lowest best error on the tuning seed, per candidate key.

        A choice at an end of the rates tried did not bracket the best, so that candidate tries
        the next rate out (a factor of 3), up to WIDEN_ROUNDS times."""
        tried: dict[str, dict[float, dict]] = {key: {} for key in candidates}
        pending = {key: list(grid(a)) for key, (a, _, _) in candidates.items()}
        for _ in range(WIDEN_ROUNDS + 1):
            settings = {
                f"tune-{key}-lr{lr:g}": (
                    candidates[key][0],
                    candidates[key][1],
                    lr,
                    seed,
                    candidates[key][2],
                )
                for key, rates in pending.items()
                for lr in rates
            }
            if not settings:
                break
            results = self.run(ranks, settings)
            for key, rates in pending.items():
                for lr in rates:
                    tried[key][lr] = results[f"tune-{key}-lr{lr:g}"]
            pending = {}
            for key, by_lr in tried.items():
                nxt = next_rate(by_lr)
                if nxt is not None:
                    pending[key] = [nxt]
        chosen = {}
        for key, by_lr in tried.items():
            lr = best_rate(by_lr)
            chosen[key] = {
                "lr": lr,
                "tried": {f"{r:g}": _error(by_lr[r]) for r in sorted(by_lr)},
                "bracketed": next_rate(by_lr) is None,
            }
        return chosen

    def seeds(self, ranks: int, settings: dict[str, tuple[str, int, float, dict]], seeds) -> dict:
        runs = self.run(
            ranks,
            {
                f"{k}-s{s}": (a, tau, lr, s, extra)
                for k, (a, tau, lr, extra) in settings.items()
                for s in seeds
            },
        )
        return {
            k: {
                **summary([runs[f"{k}-s{s}"] for s in seeds]),
                "per_seed": [runs[f"{k}-s{s}"] for s in seeds],
            }
            for k in settings
        }


def period_section(r: Runner, seeds, tune_seed: int, ranks: int) -> dict:
    candidates = {f"{a}-tau{t}": (a, t, {}) for a in PERIOD_METHODS for t in TAUS}
    tuned = r.tune(ranks, candidates, tune_seed)
    measured = r.seeds(
        ranks, {k: (a, t, tuned[k]["lr"], {}) for k, (a, t, _) in candidates.items()}, seeds
    )
    return {"tuned": tuned, "results": measured}


def workers_section(r: Runner, seeds, tuned: dict) -> dict:
    out = {}
    for p in (1, 2, 4):
        # Labels name the world size: every label is a run directory of its own.
        runs = r.seeds(
            p,
            {f"{a}-p{p}": (a, 4, tuned[f"{a}-tau4"]["lr"], {}) for a in ("easgd", "eamsgd")},
            seeds,
        )
        out[str(p)] = {key.removesuffix(f"-p{p}"): v for key, v in runs.items()}
    return out


def stability_section() -> dict:
    eta = 0.5
    runs = {}
    for p in (1, 2):
        for factor in (0.9, 1.5):
            alpha = factor * stability_bound(eta)
            cmd = horovodrun_command(
                p, ["-m", "bench.stability_run", str(eta), str(alpha), "round_robin", "80"]
            )
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[f"p{p}-x{factor}"] = {
                "alpha": round(alpha, 6),
                "measured_rate": round(measured_rate(out), 5),
                "spectral_radius": round(
                    spectral_radius(cycle_map(p, eta, alpha, "round_robin")), 5
                ),
            }
    return {"eta": eta, "optimizer_runs": runs, "map": analysis()}


def comparison_section(r: Runner, name: str, seeds, tune_seed: int, methods, extra: dict) -> dict:
    """Methods at p = 4 and tau = 4, each at its own tuned learning rate; labels carry the
    section's name, so that no two sections share a run directory."""
    keys = {a: f"{name}-{a}" for a in methods}
    tuned = r.tune(4, {keys[a]: (a, 4, extra.get(a, {})) for a in methods}, tune_seed)
    measured = r.seeds(
        4, {keys[a]: (a, 4, tuned[keys[a]]["lr"], extra.get(a, {})) for a in methods}, seeds
    )
    return {
        "tuned": {a: tuned[keys[a]] for a in methods},
        "results": {a: measured[keys[a]] for a in methods},
    }


def _cell(s: dict, key: str = "best_error") -> str:
    if not s or s.get(f"{key}_mean") is None:
        return "-"
    text = f"{s[f'{key}_mean']:.4f} ± {s[f'{key}_std']:.4f}"
    return text + (f" ({s['diverged']} diverged)" if s.get("diverged") else "")


def _rate(tuned: dict) -> str:
    """The tuned rate; a star where the widened grid still did not bracket the best."""
    return f"{tuned['lr']:g}" + ("" if tuned.get("bracketed", True) else "*")


def tables(result: dict) -> str:
    """The report's tables, from the JSON alone (docs/algorithms/fidelity.md quotes them)."""
    out = [
        f"Seeds {result.get('seeds')}, tuning seed {result.get('tune_seed')}, "
        f"{result.get('epochs')} epochs per worker; mean ± standard deviation over the seeds. "
        "A starred rate sits at an end of its widened grid.",
        "",
    ]
    period = result.get("period")
    if period:
        taus = sorted({int(k.rsplit("tau", 1)[1]) for k in period["results"]})
        for key, title in (("best_error", "Best"), ("final_error", "Final")):
            out += [
                f"{title} center test error (p = 2; tuned learning rate in brackets):",
                "",
                "| method | " + " | ".join(f"tau = {t}" for t in taus) + " |",
                "| --- |" + " --- |" * len(taus),
            ]
            for a in PERIOD_METHODS:
                cells = []
                for t in taus:
                    k = f"{a}-tau{t}"
                    if k in period["results"]:
                        cells.append(
                            f"{_cell(period['results'][k], key)} [{_rate(period['tuned'][k])}]"
                        )
                    else:
                        cells.append("-")
                out.append(f"| {a} | " + " | ".join(cells) + " |")
            out.append("")
    workers = result.get("workers")
    if workers:
        out += [
            "Workers (tau = 4, each algorithm at its tuned rate for tau = 4):",
            "",
            "| workers | easgd best | eamsgd best | steps per worker |",
            "| --- | --- | --- | --- |",
        ]
        for p, v in sorted(workers.items(), key=lambda kv: int(kv[0])):
            steps = v["easgd"]["per_seed"][0]["steps"]
            out.append(f"| {p} | {_cell(v['easgd'])} | {_cell(v['eamsgd'])} | {steps} |")
        out.append("")
    titles = {"tree": "Tree", "consensus": "Consensus", "diloco": "DiLoCo and the elastic forms"}
    for name, title in titles.items():
        sec = result.get(name)
        if sec and "results" in sec:
            out += [
                f"{title} (p = 4, tau = 4):",
                "",
                "| method | best error | final error | lr |",
                "| --- | --- | --- | --- |",
            ]
            for a, v in sec["results"].items():
                out.append(
                    f"| {a} | {_cell(v)} | {_cell(v, 'final_error')} | {_rate(sec['tuned'][a])} |"
                )
            out.append("")
    stab = result.get("stability")
    if stab:
        out += [
            f"Stability, the real optimizer (round_robin, tau = 1, eta = {stab['eta']}):",
            "",
            "| setting | alpha | growth rate measured | spectral radius of the map |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in stab["optimizer_runs"].items():
            out.append(f"| {k} | {v['alpha']} | {v['measured_rate']} | {v['spectral_radius']} |")
        out += [
            "",
            "Stability, the map (stable exactly when 0 <= alpha <= (4 - 2 eta)/(4 - eta)?):",
            "",
            "| order, workers | grid points | holds | exceptions (eta, alpha / bound, spectral radius) |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in stab["map"].items():
            ex = "; ".join(f"({e['eta']}, {e['factor']}, {e['rho']})" for e in v["exceptions"][:4])
            more = f" and {len(v['exceptions']) - 4} more" if len(v["exceptions"]) > 4 else ""
            out.append(
                f"| {k} | {v['points']} | {'yes' if v['stable_iff_inside'] else 'no'} | {ex}{more} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fidelity")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--tune-seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--out", default="bench/results/fidelity.json")
    p.add_argument(
        "--tables", action="store_true", help="only write the tables (.md) from the JSON there is"
    )
    args = p.parse_args(argv)
    if args.tables:
        out = Path(args.out)
        out.with_suffix(".md").write_text(tables(json.loads(out.read_text())) + "\n")
        print(f"fidelity: wrote {out.with_suffix('.md')}")
        return 0
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    Store().init()
    work = out_path.parent / "fidelity-work"
    work.mkdir(parents=True, exist_ok=True)
    r = Runner(work, args.epochs)
    started = time.time()
    result.update(
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seeds": seeds,
            "tune_seed": args.tune_seed,
            "epochs": args.epochs,
            "grids": GRIDS,
            "eval_every": EVAL_EVERY,
        }
    )
    for section in sections:
        t0 = time.time()
        if section == "period":
            result["period"] = period_section(r, seeds, args.tune_seed, 2)
        elif section == "workers":
            result["workers"] = workers_section(r, seeds, result["period"]["tuned"])
        elif section == "stability":
            result["stability"] = stability_section()
        elif section == "tree":
            if "tree_easgd" not in REGISTRY:
                result["tree"] = {"skipped": "tree_easgd is not in this version"}
                continue
            result["tree"] = comparison_section(
                r,
                "tree",
                seeds,
                args.tune_seed,
                ("easgd", "tree_easgd"),
                {"tree_easgd": {"group_size": 2}},
            )
        elif section == "consensus":
            if "cdsgd" not in REGISTRY:
                result["consensus"] = {"skipped": "cdsgd is not in this version"}
                continue
            result["consensus"] = comparison_section(
                r, "consensus", seeds, args.tune_seed, ("sync", "localsgd", "cdsgd", "cdmsgd"), {}
            )
        elif section == "diloco":
            result["diloco"] = comparison_section(
                r, "diloco", seeds, args.tune_seed, ("easgd", "eamsgd", "localsgd", "diloco"), {}
            )
        result.setdefault("section_seconds", {})[section] = round(time.time() - t0)
        out_path.write_text(json.dumps(result, indent=1) + "\n")  # each section as it ends
        print(f"fidelity: {section} done in {round(time.time() - t0)} s", flush=True)
    result["wall_seconds"] = round(time.time() - started)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    out_path.with_suffix(".md").write_text(tables(result) + "\n")
    print(f"fidelity: wrote {out_path} in {result['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
