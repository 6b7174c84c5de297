"""Compressed exchanges and DiLoCo against the exact forms (docs/algorithms/compression.md).

    python -m bench.compression [--sections table,lenet,diloco,slow,overlap]
                                [--seeds 1,2,3,4,5] [--out bench/results/compression.json] [--keep]

- table: every algorithm that compresses, with every compression, LeNet-5 on 2 ranks for 20
  steps (tau 10): bits per parameter per exchange and bytes per step against synchronous SGD,
  measured from the runs' `bytes_sent`, beside the published anchors' ratios.
- lenet: EAMSGD (the tuned setting of bench/results/tune.json) with float32, int8 and int4
  exchanges on every seed: final and best center accuracy, on loopback.
- diloco: DiLoCo (inner AdamW, its rate chosen on the tuning seed 0 from a small grid) against
  EAMSGD at equal bytes (the same tau and compression), time to 0.95 and final accuracy, on
  every seed.
- slow: the 1.9M-parameter MLP on 2 ranks in a namespace limited to 100 Mbit/s: synchronous SGD
  (stopped at 120 steps: only its time to 0.90 is used), EAMSGD float32, int8 and int4, on every
  seed; time to 0.90 is the sum of the steps' durations up to the evaluation that first reached
  it (bench.harness.outcome), median over the seeds.
- overlap: on the same link, EAMSGD (MLP float32 and int4, LeNet-5) and local SGD (LeNet-5)
  with every round's collective behind tau - 1 steps (overlap_steps 9) against within its step
  (0): the wall seconds of the whole run, evaluations every 100 steps alike (the harness's
  train time, the steps' own durations, would not do: a round in flight goes on while the
  loop's collectives outside the steps wait for it), and final accuracy, median over the seeds.

- shards: the MLP on 4 workers, each on a host of its own (a network namespace) whose one link
  is limited to 100 Mbit/s each way (bench/namespace_hosts.py): asynchronous EAMSGD with its
  center on 1, 2 and 4 servers (`center_shards`) against the blocking all-reduce form, every
  seed; wall seconds of the run and to 0.90, and each rank's seconds waiting on the servers.

`--keep` keeps the sections of an existing results file that this run does not measure (one
section rerun updates the file; its `wall_seconds` is then this run's).

Every setting is an ordinary run in the store (source: bench); each section's runs share one
horovodrun launch.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    WORKLOADS,
    config_for,
    drop_slow_network,
    goal_lines,
    outcome,
    section_lines,
    slow_network,
    sweep,
    tuned_settings,
    write_timed,
)
from training.run.metrics import read_jsonl
from training.schema.algorithms import REGISTRY

SECTIONS = ("table", "lenet", "diloco", "slow", "overlap", "shards")
COMPRESSIONS = ("none", "float16", "int8", "int4")
TAU = 10
DILOCO_RATES = (0.0005, 0.001, 0.002)
TUNE_SEED = 0
# What the field reports, as the issue that asked for this benchmark quotes it.
ANCHORS = [
    ("INTELLECT-1", "int8 outer gradients every 100 steps", "400x less than data parallel"),
    (
        "Streaming DiLoCo",
        "4-bit outer gradients, one fragment at a time, overlapped",
        "two orders of magnitude less bandwidth",
    ),
    ("SparseLoCo", "1-3% of the values at 2 bits, error feedback", "beats full-precision DiLoCo"),
    ("torchft", "FP8 with a scale per block", "-"),
]


def say(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def _runs(section: str, entries: list, work: Path, network: Any = "loopback", ranks: int = 2):
    t0 = time.time()
    dirs = sweep(entries, ranks, work, f"compression-{work.name}-{section}", network)
    say(f"{section}: {len(entries)} runs in {time.time() - t0:.0f} s")
    return dirs


def table(work: Path) -> dict:
    names = [n for n, s in REGISTRY.items() if "compression" in s.fields]
    base = {"algorithm": None, "learning_rate": 0.01, "tau": TAU}
    entries = []
    for name in names:
        for c in COMPRESSIONS:
            cfg = config_for("lenet", name, {**base, "algorithm": name, "compression": c})
            cfg["training"] = {"epochs": 100, "max_steps": 2 * TAU, "eval_every": 2 * TAU}
            entries.append((f"{name}-{c}", cfg))
    dirs = _runs("table", entries, work)
    params = WORKLOADS["lenet"]["params"]
    sync = outcome(dirs["sync-none"], "sync")["bytes_per_step"]
    rows = {}
    for label, run_dir in dirs.items():
        name, c = label.rsplit("-", 1)
        o = outcome(run_dir, name, tau=TAU)
        exchanges = sum(REGISTRY[name].communicates(t, TAU) for t in range(o["steps"]))
        per_exchange = o["bytes_per_step"] * o["steps"] / exchanges if exchanges else None
        rows[label] = {
            "algorithm": name,
            "compression": c,
            "bits_per_parameter": round(8 * per_exchange / params, 3) if per_exchange else None,
            "bytes_per_step": round(o["bytes_per_step"], 1),
            "over_sync": round(o["bytes_per_step"] / sync, 5),
        }
    return {"params": params, "tau": TAU, "rows": rows}


def _eamsgd() -> dict:
    return tuned_settings()["lenet"]["eamsgd"]


def lenet(work: Path, seeds: list[int]) -> dict:
    entries = []
    for c in ("none", "int8", "int4"):
        for seed in seeds:
            cfg = config_for("lenet", "eamsgd", {**_eamsgd(), "compression": c}, seed=seed)
            entries.append((f"eamsgd-{c}-s{seed}", cfg))
    dirs = _runs("lenet", entries, work)
    out = {}
    for c in ("none", "int8", "int4"):
        runs = [outcome(dirs[f"eamsgd-{c}-s{s}"], "eamsgd", 0.95) for s in seeds]
        out[c] = {
            "final_accuracy": [r["final_accuracy"] for r in runs],
            "best_accuracy": [r["best_accuracy"] for r in runs],
            "median_final": _median([r["final_accuracy"] for r in runs]),
            "mean_final": round(statistics.mean(r["final_accuracy"] or 0 for r in runs), 4),
        }
    for c in ("int8", "int4"):
        out[c]["points_below_float32"] = round(
            100 * (out["none"]["mean_final"] - out[c]["mean_final"]), 2
        )
    return out


def diloco(work: Path, seeds: list[int]) -> dict:
    tune = []
    for lr in DILOCO_RATES:
        opt = {"algorithm": "diloco", "learning_rate": lr, "tau": TAU}
        tune.append((f"tune-{lr}", config_for("lenet", "diloco", opt, seed=TUNE_SEED)))
    tuned = _runs("diloco-tune", tune, work)
    scores = {
        lr: outcome(tuned[f"tune-{lr}"], "diloco")["best_accuracy"] or 0 for lr in DILOCO_RATES
    }
    lr = max(scores, key=scores.__getitem__)
    settings = {
        "diloco": {"algorithm": "diloco", "learning_rate": lr, "tau": TAU},
        "eamsgd": _eamsgd(),
    }
    entries = []
    for c in ("none", "int4"):
        for name, opt in settings.items():
            for seed in seeds:
                cfg = config_for("lenet", name, {**opt, "compression": c}, seed=seed)
                entries.append((f"{name}-{c}-s{seed}", cfg))
    dirs = _runs("diloco", entries, work)
    out = {"diloco_learning_rate": lr, "tuning": scores}
    for c in ("none", "int4"):
        for name in settings:
            runs = [outcome(dirs[f"{name}-{c}-s{s}"], name, 0.95) for s in seeds]
            out[f"{name}-{c}"] = {
                "bytes_per_step": _median([r["bytes_per_step"] for r in runs]),
                "seconds_to_target": [r["seconds_to_target"] for r in runs],
                "median_seconds_to_target": _median([r["seconds_to_target"] for r in runs]),
                "final_accuracy": [r["final_accuracy"] for r in runs],
                "median_final": _median([r["final_accuracy"] for r in runs]),
            }
    return out


def _seeded(settings: dict, seeds: list[int], adjust: Any = None) -> list[tuple[str, dict]]:
    """Each setting (label: (workload, algorithm, optimizer)) on every seed, labelled
    `{label}-s{seed}`; `adjust(algorithm, training)` may change a run's training section."""
    entries = []
    for label, (workload, name, opt) in settings.items():
        for seed in seeds:
            cfg = config_for(workload, name, opt, seed=seed)
            if adjust is not None:
                adjust(name, cfg["training"])
            entries.append((f"{label}-s{seed}", cfg))
    return entries


def _on_slow_link(section: str, entries: list, work: Path) -> dict[str, Path]:
    """The runs in the 100 Mbit/s namespace `slow_network` made; it goes when they end."""
    try:
        return _runs(section, entries, work, "slow")
    finally:
        drop_slow_network()


def slow(work: Path, seeds: list[int]) -> dict:
    skipped = slow_network()
    if skipped:
        return {"skipped": skipped}
    tuned = tuned_settings()["mlp"]
    settings = {"sync": ("sync", tuned["sync"])}
    for c in ("none", "int8", "int4"):
        settings[f"eamsgd-{c}"] = ("eamsgd", {**tuned["eamsgd"], "compression": c})

    def stop_sync(name: str, training: dict) -> None:
        if name == "sync":
            training["max_steps"] = 120

    entries = _seeded({k: ("mlp", *v) for k, v in settings.items()}, seeds, stop_sync)
    dirs = _on_slow_link("slow", entries, work)
    out = {}
    for label, (name, _) in settings.items():
        runs = [outcome(dirs[f"{label}-s{s}"], name, 0.90) for s in seeds]
        out[label] = {
            "seconds_to_target": [r["seconds_to_target"] for r in runs],
            "median_seconds_to_target": _median([r["seconds_to_target"] for r in runs]),
            "final_accuracy": [r["final_accuracy"] for r in runs],
            "median_final": _median([r["final_accuracy"] for r in runs]),
            "bytes_per_step": _median([r["bytes_per_step"] for r in runs]),
        }
    sync = out["sync"]["median_seconds_to_target"]
    for label in out:
        t = out[label]["median_seconds_to_target"]
        out[label]["time_over_sync"] = round(t / sync, 4) if t and sync else None
    return out


OVERLAP_SETTINGS = {
    "mlp-eamsgd-none": ("mlp", "eamsgd", "none"),
    "mlp-eamsgd-int4": ("mlp", "eamsgd", "int4"),
    "lenet-eamsgd-none": ("lenet", "eamsgd", "none"),
    "lenet-localsgd-none": ("lenet", "localsgd", "none"),
}
# Collectives outside the steps (evaluations) wait for a round in flight: the overlapped and the
# exact runs are timed by the wall clock, with the same few evaluations.
OVERLAP_EVAL_EVERY = 100


def _wall_seconds(run_dir: Path) -> float | None:
    wall = _last_row(run_dir).get("wall_time")
    return round(wall, 3) if wall is not None else None


def overlap(work: Path, seeds: list[int]) -> dict:
    skipped = slow_network()
    if skipped:
        return {"skipped": skipped}
    settings = {}
    for label, (workload, name, compression) in OVERLAP_SETTINGS.items():
        opt = {**tuned_settings()[workload][name], "compression": compression}
        for d in (0, opt["tau"] - 1):
            settings[f"{label}-d{d}"] = (workload, name, {**opt, "overlap_steps": d})

    def evaluate_rarely(name: str, training: dict) -> None:
        training["eval_every"] = OVERLAP_EVAL_EVERY

    dirs = _on_slow_link("overlap", _seeded(settings, seeds, evaluate_rarely), work)
    out = {}
    for label, (_, name, _) in settings.items():
        walls = [_wall_seconds(dirs[f"{label}-s{s}"]) for s in seeds]
        runs = [outcome(dirs[f"{label}-s{s}"], name) for s in seeds]
        out[label] = {
            "wall_seconds": walls,
            "median_wall_seconds": _median(walls),
            "median_comm_step_ms": _median([r["median_comm_step_ms"] for r in runs]),
            "median_local_step_ms": _median([r["median_local_step_ms"] for r in runs]),
            "final_accuracy": [r["final_accuracy"] for r in runs],
            "median_final": _median([r["final_accuracy"] for r in runs]),
            "bytes_per_step": _median([r["bytes_per_step"] for r in runs]),
        }
    for label in OVERLAP_SETTINGS:
        exact, late = (out[k]["median_wall_seconds"] for k in sorted(out) if k.startswith(label))
        if exact and late:
            out[f"{label}-ratio"] = {"wall_seconds_ratio": round(late / exact, 4)}
    return out


SHARDS = (1, 2, 4)
SHARD_WORKERS = 4
SHARD_STEPS = 150
LINK_BYTES = 100e6 / 8  # a second of a 100 Mbit/s link


def shards(work: Path, seeds: list[int]) -> dict:
    from bench import namespace_hosts

    why = namespace_hosts.unavailable()
    if why:
        return {"skipped": why}
    tuned = tuned_settings()["mlp"]["eamsgd"]
    settings = {"blocking": {**tuned}}
    for k in SHARDS:
        settings[f"shards-{k}"] = {**tuned, "asynchronous": True, "center_shards": k}

    def shorter(name: str, training: dict) -> None:
        training["max_steps"] = SHARD_STEPS

    entries = _seeded({k: ("mlp", "eamsgd", v) for k, v in settings.items()}, seeds, shorter)
    hosts = namespace_hosts.NamespaceHosts(work / "hosts", count=SHARD_WORKERS).start()
    try:
        dirs = _runs("shards", entries, work, hosts, ranks=SHARD_WORKERS)
    finally:
        hosts.close()
    out = {}
    for label in settings:
        runs = [dirs[f"{label}-s{s}"] for s in seeds]
        walls = [_wall_seconds(d) for d in runs]
        reached = [_wall_to(d, 0.90) for d in runs]
        waits = [_waits(d) for d in runs]
        finals = [outcome(d, "eamsgd")["final_accuracy"] for d in runs]
        out[label] = {
            "wall_seconds": [round(w, 3) if w else None for w in walls],
            "median_wall_seconds": _median(walls),
            "wall_seconds_to_target": reached,
            "median_wall_seconds_to_target": _median(reached),
            "waited_seconds_per_rank": waits,
            "median_waited_by_workers_1_on": _median([statistics.mean(w[1:]) for w in waits if w]),
            "final_accuracy": finals,
            "median_final": _median(finals),
        }
    return out


def _wall_to(run_dir: Path, target: float) -> float | None:
    """Wall seconds of the first evaluation at or above `target` (rank 0's clock)."""
    path = run_dir / "metrics.jsonl"
    for row in read_jsonl(path) if path.exists() else []:
        if (row.get("center_accuracy") or 0) >= target:
            return round(row["wall_time"], 3)
    return None


def _waits(run_dir: Path) -> list[float]:
    """Each rank's seconds waiting on the center server (the run's closing summary event)."""
    path = run_dir / "events.jsonl"
    events = read_jsonl(path) if path.exists() else []
    summary = next((e["message"] for e in events if e["kind"] == "asynchronous"), "")
    return [float(w) for w in re.findall(r"waited ([0-9.]+) s", summary)]


def _last_row(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    return rows[-1] if rows else {}


def goals(result: dict) -> list[dict]:
    out = []
    s = result.get("slow")
    if s and "skipped" not in s:
        best = min(
            ("eamsgd-int8", "eamsgd-int4"),
            key=lambda k: s[k]["time_over_sync"] if s[k]["time_over_sync"] is not None else 9e9,
        )
        r = s[best]["time_over_sync"]
        gap = None
        if s[best]["median_final"] is not None and s["eamsgd-none"]["median_final"] is not None:
            gap = round(100 * (s["eamsgd-none"]["median_final"] - s[best]["median_final"]), 2)
        out.append(
            {
                "goal": f"MLP, 100 Mbit/s: {best} time to 0.90 <= 0.03x sync (median of seeds)",
                "measured": r,
                "met": r is not None and r <= 0.03,
            }
        )
        out.append(
            {
                "goal": f"MLP, 100 Mbit/s: {best} final accuracy within 0.5 points of float32 EAMSGD",
                "measured": gap,
                "met": gap is not None and gap <= 0.5,
            }
        )
    le = result.get("lenet")
    if le:
        for c in ("int8", "int4"):
            d = le[c]["points_below_float32"]
            out.append(
                {
                    "goal": f"LeNet, loopback: {c} EAMSGD final accuracy within 0.5 points of float32",
                    "measured": d,
                    "met": abs(d) <= 0.5,
                }
            )
    sh = result.get("shards")
    if sh and "skipped" not in sh:
        walls = " / ".join(f"{sh[f'shards-{k}']['median_wall_seconds']}" for k in SHARDS)
        waits = " / ".join(f"{sh[f'shards-{k}']['median_waited_by_workers_1_on']}" for k in SHARDS)
        floor = round(2 * 4 * WORKLOADS["mlp"]["params"] * SHARD_STEPS / TAU / LINK_BYTES, 1)
        out += [
            {
                "goal": f"{SHARD_WORKERS} workers, 100 Mbit/s links: wall seconds with "
                f"{', '.join(map(str, SHARDS))} center shards against the blocking all-reduce",
                "measured": f"{walls} s; blocking {sh['blocking']['median_wall_seconds']} s",
                "met": None,
            },
            {
                "goal": "where the server's link stops being the bottleneck: the other workers' "
                "wait on the servers against their own link's floor (a read and a write of the "
                "model per exchange)",
                "measured": f"{waits} s; floor {floor} s",
                "met": None,
            },
        ]
    return out


def markdown(result: dict) -> str:
    lines = [f"# Compressed exchanges and DiLoCo ({result['when']})", ""]
    t = result.get("table")
    if t:
        lines += [
            f"## Bits per parameter per exchange, bytes per step (LeNet-5, {t['params']:,} "
            f"parameters, 2 ranks, tau {t['tau']})",
            "",
            "| algorithm | compression | bits/parameter/exchange | bytes/step | x sync |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in t["rows"].values():
            lines.append(
                f"| {row['algorithm']} | {row['compression']} | {row['bits_per_parameter']} | "
                f"{row['bytes_per_step']:.0f} | {row['over_sync']} |"
            )
        lines += ["", "| anchor | what is sent | published |", "| --- | --- | --- |"]
        lines += [f"| {a} | {w} | {p} |" for a, w, p in ANCHORS]
        lines.append("")
    if sec := result.get("lenet"):
        rows = [[c, f["final_accuracy"], f["median_final"]] for c, f in sec.items()]
        lines += ["## LeNet-5, loopback: EAMSGD by compression", ""]
        lines += _table(["compression", "final accuracy per seed", "median"], rows) + [""]
    for key, title in (
        ("diloco", "LeNet-5, loopback: DiLoCo against EAMSGD at equal bytes (target 0.95)"),
        ("slow", "MLP 784-1024-1024-10, 2 ranks, 100 Mbit/s (target 0.90)"),
    ):
        head, ran = section_lines(title, result.get(key))
        lines += head
        if not ran:
            continue
        sec = result[key]
        if "diloco_learning_rate" in sec:
            lines += [
                f"DiLoCo's inner AdamW rate: {sec['diloco_learning_rate']} (tuning seed "
                f"{TUNE_SEED}: {sec['tuning']})",
                "",
            ]
        lines += [
            "| setting | bytes/step | seconds to target per seed | median | final "
            "accuracy per seed | median |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, f in sec.items():
            if not isinstance(f, dict) or "median_final" not in f:
                continue
            lines.append(
                f"| {name} | {f['bytes_per_step']} | {f['seconds_to_target']} | "
                f"{f['median_seconds_to_target']} | {f['final_accuracy']} | {f['median_final']} |"
            )
        lines.append("")
    lines += _overlap_lines(result.get("overlap"))
    lines += _shard_lines(result.get("shards"))
    lines += goal_lines(result["goals"])
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in rows),
    ]


def _overlap_lines(sec: dict | None) -> list[str]:
    title = "100 Mbit/s: every round behind tau - 1 steps (d9) or within its step (d0)"
    head, ran = section_lines(title, sec)
    if not ran:
        return head
    rows = [
        [n, f["bytes_per_step"], f["wall_seconds"], f["median_wall_seconds"]]
        + [f"{f['median_comm_step_ms']} / {f['median_local_step_ms']}", f["final_accuracy"]]
        for n, f in sec.items()
        if "wall_seconds" in f
    ]
    ratios = [
        f"{n.removesuffix('-ratio')} {f['wall_seconds_ratio']}x"
        for n, f in sec.items()
        if "wall_seconds_ratio" in f
    ]
    return (
        head
        + [
            f"Wall seconds of the whole run (evaluations every {OVERLAP_EVAL_EVERY} steps "
            "alike); median step of a round that communicates (comm) and of one that does not "
            "(local).",
            "",
        ]
        + _table(
            ["setting", "bytes/step", "wall seconds per seed", "median"]
            + ["comm / local step ms", "final accuracy per seed"],
            rows,
        )
        + ["", f"Wall seconds overlapped over exact: {', '.join(ratios)}.", ""]
    )


def _shard_lines(sec: dict | None) -> list[str]:
    title = (
        f"MLP, {SHARD_WORKERS} workers on hosts with one 100 Mbit/s link each: a sharded center "
        "against the blocking all-reduce"
    )
    head, ran = section_lines(title, sec)
    if not ran:
        return head
    keys = ["wall_seconds", "median_wall_seconds", "wall_seconds_to_target"]
    keys += ["waited_seconds_per_rank", "final_accuracy"]
    header = ["setting", "wall seconds per seed", "median", "wall seconds to 0.90"]
    header += ["waited per rank (s)", "final accuracy per seed"]
    note = (
        f"{SHARD_STEPS} steps, wall seconds on rank 0's clock, evaluations every 10 steps alike; "
        "waited: each rank's seconds waiting on the center's servers (rank 0 first)."
    )
    rows = [[n, *(f[k] for k in keys)] for n, f in sec.items()]
    return head + [note, ""] + _table(header, rows) + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compression")
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--out", default="bench/results/compression.json")
    ap.add_argument(
        "--keep", action="store_true", help="keep the other sections of an existing --out file"
    )
    args = ap.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        ap.error(f"--seeds takes integers separated by commas (received: {args.seeds!r})")
    started = time.time()
    work = Path("build") / "bench-compression" / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"seeds": dict.fromkeys(sections, seeds)}
    if args.keep and Path(args.out).exists():
        kept = json.loads(Path(args.out).read_text())
        result = {k: v for k, v in kept.items() if k in SECTIONS and k not in sections}
        old = kept.get("seeds")
        old = old if isinstance(old, dict) else dict.fromkeys(result, old)
        result["seeds"] = {**{k: old.get(k) for k in result}, **dict.fromkeys(sections, seeds)}
        result["kept_from"] = kept.get("when")
    if "table" in sections:
        result["table"] = table(work)
    if "lenet" in sections:
        result["lenet"] = lenet(work, seeds)
    if "diloco" in sections:
        result["diloco"] = diloco(work, seeds)
    if "slow" in sections:
        result["slow"] = slow(work, seeds)
    if "overlap" in sections:
        result["overlap"] = overlap(work, seeds)
    if "shards" in sections:
        result["shards"] = shards(work, seeds)
    result["goals"] = goals(result)
    write_timed(args.out, result, started, "bench.compression")
    result["when"] = result.get("when", time.strftime("%Y-%m-%dT%H:%M:%S"))
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
