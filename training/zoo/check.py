"""`python -m training.zoo.check`: a configuration's own model and data tried before a job is
queued, so that a builder or loader that does not import, does not take its options or returns
the wrong thing is refused in one line, not found by the ranks after launch.

It reads the configuration as JSON on stdin, loads the data, builds the model and computes the
loss and each score on four held-out examples; it prints one line and exits 0, or 2 when the
configuration's code is at fault. The job service runs it in the job's working directory.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from db.errors import EasgdError
from training.schema import ConfigError, parse_config


def check(config) -> str:
    from training.zoo import data, models

    cfg = config
    stage = "data.loader" if cfg.data.loader else "data.dataset"
    try:
        ds = data.load(cfg.data, cfg.seed, 0, cfg.resources.workers)
        stage = "model.builder" if cfg.model.builder else "model.name"
        model = models.build(cfg.model, ds.input_shape, ds.num_classes)
        stage = "model.loss"
        loss, scores = models.loss_and_scores(cfg.model)
        x, y = ds.x_test[:4], ds.y_test[:4]
        predicted = model(x, training=False)
        value = float(np.asarray(loss(y, predicted)))
        for name, fn in scores.items():
            stage = "model.metrics"
            found = np.asarray(fn(y, predicted))
            if found.shape != (len(x),):
                raise EasgdError(
                    f"model.metrics: {name} gives values of shape {found.shape} for {len(x)} "
                    "examples; a score gives one value per example (as Keras' metric functions "
                    "such as mean_absolute_error do)"
                )
    except EasgdError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code, said in one line
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise EasgdError(f"{stage}: {type(exc).__name__}: {text}") from None
    return (
        f"ok: {len(ds.x_train)} training and {len(ds.x_test)} held-out examples of shape "
        f"{ds.input_shape}; a model of {model.count_params():,} parameters; loss {value:.4g}"
    )


def main() -> int:
    try:
        config = parse_config(json.loads(sys.stdin.read()))
        print(check(config))
        return 0
    except ConfigError as exc:
        print(exc.problems[0])
    except EasgdError as exc:
        print(str(exc).splitlines()[0])
    return 2


if __name__ == "__main__":
    sys.exit(main())
