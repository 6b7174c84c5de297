"""Run every case of CASES under horovodrun; rank 0 saves workers, centers and replicas to a .npz.

Usage: horovodrun -np N -H localhost:N --gloo python tests/training/equations_worker.py OUT.npz
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import least_squares  # noqa: E402
import reference  # noqa: E402

from training.exchanges import collectives  # noqa: E402
from training.exchanges.optimizer import (  # noqa: E402
    ElasticAveragingOptimizer,
    OverlapCallback,
    build_inner,
    make_optimizer,
)
from training.schema import parse_config  # noqa: E402
from training.schema.algorithms import REGISTRY  # noqa: E402

# Each case: (label, exchange, inner, momentum, tau, beta, steps, path, order)
SIM, RR = "simultaneous", "round_robin"
CASES = [
    ("sync-sgd", "sync", "sgd", 0.0, 1, 0.9, 12, "loop", SIM),
    ("easgd-tau2-b0.9", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", SIM),
    ("easgd-tau5-b0.5", "elastic", "sgd", 0.0, 5, 0.5, 16, "loop", SIM),
    # EAMSGD (Algorithm 2): two values each of tau, beta and delta, and the issue's own case.
    ("eamsgd-tau3-b0.9-d0.9", "elastic", "nesterov", 0.9, 3, 0.9, 10, "loop", SIM),
    ("eamsgd-tau4-b0.6-d0.99", "elastic", "nesterov", 0.99, 4, 0.6, 13, "loop", SIM),
    ("eamsgd-tau3-b0.8-d0.9", "elastic", "nesterov", 0.9, 3, 0.8, 11, "loop", SIM),
    ("elastic-momentum-tau3", "elastic", "momentum", 0.9, 3, 0.9, 10, "loop", SIM),
    ("elastic-adam-tau3", "elastic", "adam", 0.0, 3, 0.9, 10, "loop", SIM),
    ("easgd-negative-beta", "elastic", "sgd", 0.0, 2, -0.3, 8, "loop", SIM),
    ("easgd-round-robin-tau2", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", RR),
    ("eamsgd-round-robin-tau3", "elastic", "nesterov", 0.9, 3, 0.8, 10, "loop", RR),
    ("downpour-tau2", "downpour", "sgd", 0.0, 2, 0.9, 8, "loop", SIM),
    ("downpour-tau4", "downpour", "sgd", 0.0, 4, 0.9, 13, "loop", SIM),
    ("mdownpour-tau3", "mdownpour", "sgd", 0.0, 3, 0.9, 10, "loop", SIM),
    ("mvadownpour-tau2", "mvadownpour", "sgd", 0.0, 2, 0.9, 9, "loop", SIM),
    ("mvadownpour-tau3", "mvadownpour", "sgd", 0.0, 3, 0.9, 10, "loop", SIM),
    ("adownpour-tau2", "adownpour", "sgd", 0.0, 2, 0.9, 9, "loop", SIM),
    ("adownpour-tau3", "adownpour", "sgd", 0.0, 3, 0.9, 10, "loop", SIM),
    ("localsgd-tau2", "localsgd", "sgd", 0.0, 2, 0.9, 8, "loop", SIM),
    ("localsgd-tau5", "localsgd", "sgd", 0.0, 5, 0.9, 16, "loop", SIM),
    ("easgd-fit-tau3", "elastic", "sgd", 0.0, 3, 0.9, 10, "fit", SIM),
    ("sync-fit", "sync", "sgd", 0.0, 1, 0.9, 6, "fit", SIM),
]
# Compressed exchanges and DiLoCo, as CASES with their compression last.
COMPRESSED = [
    ("easgd-int4", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", SIM, "int4"),
    ("eamsgd-int8", "elastic", "nesterov", 0.9, 3, 0.9, 10, "loop", SIM, "int8"),
    ("easgd-float16", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", SIM, "float16"),
    ("easgd-round-robin-int4", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", RR, "int4"),
    ("downpour-int4", "downpour", "sgd", 0.0, 2, 0.9, 8, "loop", SIM, "int4"),
    ("mdownpour-int8", "mdownpour", "sgd", 0.0, 3, 0.9, 10, "loop", SIM, "int8"),
    ("adownpour-int4", "adownpour", "sgd", 0.0, 2, 0.9, 9, "loop", SIM, "int4"),
    ("localsgd-int4", "localsgd", "sgd", 0.0, 2, 0.9, 8, "loop", SIM, "int4"),
    ("localsgd-nesterov", "localsgd", "nesterov", 0.9, 2, 0.9, 8, "loop", SIM, "none"),
    ("downpour-nesterov-int8", "downpour", "nesterov", 0.9, 3, 0.9, 10, "loop", SIM, "int8"),
    ("sync-int8", "sync", "sgd", 0.0, 1, 0.9, 6, "loop", SIM, "int8"),
    ("diloco-sgd", "diloco", "sgd", 0.0, 3, 0.9, 10, "loop", SIM, "none"),
    ("diloco-nesterov", "diloco", "nesterov", 0.9, 2, 0.9, 9, "loop", SIM, "none"),
    ("diloco-adamw-int4", "diloco", "adamw", 0.0, 3, 0.9, 10, "loop", SIM, "int4"),
]
# Overlapped rounds (overlap_steps), as COMPRESSED with the steps a round runs behind last.
OVERLAPPED = [
    ("eamsgd-overlap2", "elastic", "nesterov", 0.9, 3, 0.9, 10, "loop", SIM, "none", 2),
    ("easgd-overlap1-int4", "elastic", "sgd", 0.0, 2, 0.9, 9, "loop", SIM, "int4", 1),
    ("easgd-fit-overlap2", "elastic", "sgd", 0.0, 3, 0.9, 10, "fit", SIM, "none", 2),
    ("localsgd-overlap2", "localsgd", "sgd", 0.0, 3, 0.9, 10, "loop", SIM, "none", 2),
    (
        "localsgd-nesterov-overlap1-int8",
        "localsgd",
        "nesterov",
        0.9,
        3,
        0.9,
        11,
        "loop",
        SIM,
        "int8",
        1,
    ),
    ("diloco-overlap2", "diloco", "sgd", 0.0, 3, 0.9, 10, "loop", SIM, "none", 2),
    ("diloco-adamw-overlap1-int4", "diloco", "adamw", 0.0, 3, 0.9, 9, "loop", SIM, "int4", 1),
]
ALL = [(*case, "none", 0) for case in CASES] + [(*case, 0) for case in COMPRESSED] + OVERLAPPED
LR = 0.05
CENTER_MOMENTUM = 0.5
AVERAGE_RATE = 0.1
# Every registry algorithm whose exchange `reference.run` transcribes, also as the training
# program builds it from a configuration (its defaults, its fields), with this period.
REGISTRY_TAU, REGISTRY_STEPS = 3, 10
REGISTRY_CASES = [n for n, s in REGISTRY.items() if s.exchange.name in reference.TRANSCRIBED]


def run_case(exchange, inner, momentum, tau, beta, steps, path, order, compression, overlap):
    opt = ElasticAveragingOptimizer(
        build_inner(inner, LR, momentum),
        tau=tau,
        beta=beta,
        exchange=exchange,
        center_momentum=CENTER_MOMENTUM,
        average_rate=AVERAGE_RATE,
        order=order,
        compression=compression,
        overlap_steps=overlap,
    )
    return train(opt, steps, path)


def run_registry_case(name: str) -> tuple[dict, dict]:
    """(results, what the reference needs) of algorithm `name` built from its configuration."""
    config = {"algorithm": name, "tau": REGISTRY_TAU, "learning_rate": LR}
    optimizer = parse_config({"optimizer": config}).optimizer
    r = train(make_optimizer(optimizer), REGISTRY_STEPS, "loop")
    case = {
        "exchange": optimizer.spec.exchange.name,
        "inner": optimizer.resolved_inner.value,
        "momentum": optimizer.resolved_momentum,
        "arguments": optimizer.exchange_arguments(),
        "steps": REGISTRY_STEPS,
    }
    return r, case


def train(opt, steps, path):
    model, a, b = least_squares.model_and_data()
    if path == "loop":
        step = least_squares.stepper(model, opt, a, b)
        for t in range(steps):
            if opt.overlapped:  # what the trainer does around each step
                opt.before_step(t)
            step()
            if opt.overlapped:
                opt.after_step(t)
        opt.land()
    else:
        callbacks = [OverlapCallback(opt)] if opt.overlap_steps else []
        least_squares.fit(model, opt, a, b, steps, LR, callbacks)
    worker = model.layers[0].kernel.numpy()
    velocity = least_squares.slots_of(opt, worker)
    evaluated = np.stack([v.numpy() for v in opt.evaluation_variables])[0]
    center = opt.center[0].numpy() if opt.center else worker
    comm = opt.communication()
    return {
        "workers": np.stack(collectives.allgather_object(worker)),
        "velocities": np.stack(collectives.allgather_object(velocity)),
        "centers": np.stack(collectives.allgather_object(center)),
        "evaluated": np.stack(collectives.allgather_object(evaluated)),
        "bytes_sent": comm["bytes_sent"],
        "rounds": comm["rounds"],
        "iterations": int(opt.iterations.numpy()),
    }


def main(out: str) -> None:
    collectives.init()
    results = {}
    meta = {}
    for label, exchange, inner, momentum, tau, beta, steps, path, order, compression, d in ALL:
        r = run_case(exchange, inner, momentum, tau, beta, steps, path, order, compression, d)
        for key in ("workers", "velocities", "centers", "evaluated"):
            results[f"{label}/{key}"] = r[key]
        meta[label] = {
            "exchange": exchange,
            "inner": inner,
            "momentum": momentum,
            "tau": tau,
            "beta": beta,
            "steps": steps,
            "path": path,
            "order": order,
            "compression": compression,
            "overlap": d,
            "bytes_sent": r["bytes_sent"],
            "rounds": r["rounds"],
            "iterations": r["iterations"],
        }
    for name in REGISTRY_CASES:
        r, meta[f"registry/{name}"] = run_registry_case(name)
        for key in ("workers", "velocities", "centers", "evaluated"):
            results[f"registry/{name}/{key}"] = r[key]
    least_squares.save_results(
        out, results, meta, lr=LR, center_momentum=CENTER_MOMENTUM, average_rate=AVERAGE_RATE
    )


if __name__ == "__main__":
    main(sys.argv[1])
