"""Run-store benchmark: metric rows written per second by one batched writer, and the time to
read a downsampled history of 20 runs x 10,000 steps (what the Compare page asks for).

    python -m bench.store [--db-url URL] [--out bench/results/store.json]

Goals (issue 3): at least 20,000 rows/s; the downsampled read under 300 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import write_result
from db.store import Store

RUNS, STEPS, BATCH = 20, 10_000, 2000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store")
    p.add_argument("--db-url", help="store to measure (default: a fresh SQLite file)")
    p.add_argument("--out", default="bench/results/store.json")
    args = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    url = args.db_url or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    store = Store(url)
    store.init()
    stamp = time.strftime("%Y%m%d%H%M%S")

    # One writer, batches of BATCH rows, the way rank 0's sink writes.
    write_seconds = 0.0
    rows_written = 0
    for r in range(RUNS):
        run_id = f"bench-{stamp}-{r}"
        store.create_run(run_id, params={"bench": "store"}, source="bench")
        rows = [("train_loss", s, s * 0.01, 1.0 / (s + 1)) for s in range(STEPS)]
        for i in range(0, len(rows), BATCH):
            t0 = time.perf_counter()
            rows_written += store.log_metrics(run_id, rows[i : i + BATCH])
            write_seconds += time.perf_counter() - t0
        store.finish_run(run_id, "finished")
    run_ids = [f"bench-{stamp}-{r}" for r in range(RUNS)]

    reads = []
    for _ in range(7):
        t0 = time.perf_counter()
        out = store.metric_histories(run_ids, ["train_loss"], max_points=1000)
        reads.append(time.perf_counter() - t0)
    points = sum(len(v) for v in out.values())
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "store": store.engine.dialect.name,
        "writer": {
            "rows": rows_written,
            "batch_rows": BATCH,
            "seconds": round(write_seconds, 3),
            "rows_per_second": round(rows_written / write_seconds),
            "goal_rows_per_second": 20000,
        },
        "downsampled_read": {
            "runs": RUNS,
            "steps_per_run": STEPS,
            "max_points": 1000,
            "points_returned": points,
            "median_ms": round(statistics.median(reads) * 1000, 1),
            "max_ms": round(max(reads) * 1000, 1),
            "goal_ms": 300,
        },
    }
    if args.db_url:  # leave the user's store as it was
        for run_id in run_ids:
            store.delete_run(run_id)
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
