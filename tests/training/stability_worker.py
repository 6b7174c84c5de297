"""bench.stability_run's program for several elastic rates in one launch, so that
tests/training/test_stability.py starts one horovodrun per number of workers, not one per rate.
Each rate gets its own variable and optimizer; rank 0 prints one JSON line of norms per rate, in
the order given.

Usage: horovodrun -np P -H localhost:P --gloo python -m tests.training.stability_worker ETA STEPS
ALPHA [ALPHA ...]
"""

from __future__ import annotations

import sys

from bench.stability_run import main

if __name__ == "__main__":
    eta, steps = float(sys.argv[1]), int(sys.argv[2])
    for alpha in sys.argv[3:]:
        main(eta, float(alpha), "round_robin", steps)
