"""Several runs inside one horovodrun launch (TensorFlow and Horovod start once).

    horovodrun -np N ... python -m bench.sweep PLAN.json

PLAN.json is a list of {"config": PATH, "out": DIR}. Each entry is an ordinary run of the
training program: its own run directory and its own record in the run store (source: bench).
A run that fails is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(plan_path: str) -> int:
    from training.run.program import run
    from training.run.store_sink import sinks_factory
    from training.schema import resolve

    plan = json.loads(open(plan_path).read())
    failures = 0
    for entry in plan:
        config = resolve(entry["config"])
        code = run(config, entry["out"], None, "bench", sinks_factory(None))
        failures += code != 0
    return 1 if failures == len(plan) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
