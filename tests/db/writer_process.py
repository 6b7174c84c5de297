"""A process that writes one run's metrics in many small batches (concurrency test)."""

from __future__ import annotations

import sys

from db.store import Store

url, run_id, batches, per_batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = Store(url)
store.create_run(run_id, params={"writer": run_id})
step = 0
for _ in range(batches):
    rows = []
    for _ in range(per_batch):
        rows.append(("loss", step, float(step), 1.0 / (step + 1)))
        step += 1
    store.log_metrics(run_id, rows)
    store.search_runs("metrics.loss >= 0")  # readers interleave with writers
store.finish_run(run_id, "finished")
print("ok")
