"""Under horovodrun: every rank trains a compiled model a few steps, rank 0 saves it, then rank 0
alone loads it back while the other ranks wait at the next collective.

Usage: horovodrun -np 2 -H localhost:2 --gloo python tests/training/load_model_worker.py DIR
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.exchanges import collectives  # noqa: E402
from training.exchanges.optimizer import eamsgd  # noqa: E402


def main(out_dir: str) -> None:
    collectives.init()
    rank = collectives.rank()
    keras.utils.set_random_seed(rank)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=eamsgd(0.05, tau=2), loss="mse", jit_compile=False)
    x = np.random.default_rng(rank).normal(size=(16, 4)).astype("float32")
    model.fit(x, x[:, :3], batch_size=4, epochs=1, verbose=0)
    path = os.path.join(out_dir, "model.keras")
    if rank == 0:
        model.save(path)
    collectives.barrier()
    loaded = None
    if rank == 0:
        # Rank 0 alone, as when evaluating a checkpoint inside a running job.
        loaded = keras.models.load_model(path)
    summary = collectives.broadcast_object(
        {
            "loaded": loaded is not None,
            "tau": getattr(loaded.optimizer, "tau", None) if loaded else None,
        },
        0,
    )
    if rank == 0:
        same = [
            bool(np.array_equal(a, b)) for a, b in zip(model.get_weights(), loaded.get_weights())
        ]
        center = [v.numpy().tolist() for v in loaded.optimizer.center]
        original = [v.numpy().tolist() for v in model.optimizer.center]
        with open(os.path.join(out_dir, "result.json"), "w") as f:
            json.dump({**summary, "same_weights": same, "same_center": center == original}, f)


if __name__ == "__main__":
    main(sys.argv[1])
