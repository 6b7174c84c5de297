"""Advice that does not refuse a configuration, shown before a launch."""

from __future__ import annotations

import math

from training.schema.experiment import ExperimentConfig
from training.schema.lr_scaling import lr_scale
from training.schema.topology import TopologyError, connected, mixing_matrix


def stability_bound(learning_rate: float) -> float:
    """Upper end of the paper's round-robin stability region for alpha, (4 - 2 eta) / (4 - eta);
    from eta = 2 on the region is empty (and the formula would divide by zero at 4)."""
    if learning_rate >= 2:
        return 0.0
    return (4 - 2 * learning_rate) / (4 - learning_rate)


def warnings_for(config: ExperimentConfig, workers: int | None = None) -> list[str]:
    """Advice that does not refuse the configuration, shown before launch."""
    out: list[str] = []
    opt = config.optimizer
    p = workers or config.resources.workers
    spec = opt.spec
    if "alpha" in spec.fields:
        alpha = opt.resolved_alpha(p)
        bound = stability_bound(opt.learning_rate)
        if alpha < 0:
            out.append(
                f"optimizer.alpha: {alpha:g} is a negative moving rate: workers and center push "
                "each other apart (the thesis relates it to momentum SGD); it is outside the "
                f"stability region 0 <= alpha <= {bound:.4g}, so keep |alpha| small"
            )
        elif not (0 <= alpha <= bound) or math.isnan(alpha):
            out.append(
                f"optimizer.alpha: {alpha:g} is outside the paper's stability region "
                f"0 <= alpha <= (4 - 2 eta) / (4 - eta) = {bound:.4g} for eta = "
                f"{opt.learning_rate:g}; training may diverge"
            )
        if p * alpha > 1:
            out.append(
                f"optimizer.alpha: beta = workers x alpha = {p * alpha:g} > 1 pulls the center "
                "past the workers' mean"
            )
    if (problem := topology_problem(config, p)) is not None:
        out.append(problem)
    elif (
        "topology" in spec.fields and isinstance(opt.topology, list) and not connected(opt.topology)
    ):
        out.append(
            "optimizer.topology: the graph of the mixing matrix is not connected; workers in "
            "different parts never agree"
        )
    scale = lr_scale(opt.lr_scaling, p)
    if opt.warmup_steps and scale == 1:
        out.append(
            f"optimizer.warmup_steps: no effect with lr_scaling '{opt.lr_scaling}' on {p} "
            "worker(s): the warm-up ramps from learning_rate to learning_rate x scale, here x 1"
        )
    if opt.learning_rate * scale > 10:
        out.append(
            f"optimizer.lr_scaling: the scaled learning rate {opt.learning_rate:g} x {scale:g} = "
            f"{opt.learning_rate * scale:g} on {p} workers is above 10; training may diverge"
        )
    if opt.order == "round_robin" and not opt.asynchronous and "alpha" not in spec.fields:
        if "order" in spec.fields:
            out.append(
                f"optimizer.order: round_robin changes nothing in synchronous '{spec.name}' (the "
                "center takes the sum of the updates); it orders the asynchronous form's turns"
            )
    if opt.exchange_precision != "float32" and not opt.served:
        out.append(
            f"optimizer.exchange_precision: {opt.exchange_precision} applies to the center "
            "server's messages only (asynchronous: true, or backup_workers); this run all-reduces "
            "in float32"
        )
    if not spec.periodic and opt.tau != 10:
        out.append(
            f"optimizer.tau: ignored by algorithm '{spec.name}' (it communicates every step)"
        )
    return out


def topology_problem(config: ExperimentConfig, workers: int) -> str | None:
    """Why the configuration's mixing matrix does not fit `workers` workers (the schema cannot
    know how many ranks a shell run starts); None when it fits, or the algorithm takes none."""
    opt = config.optimizer
    if "topology" not in opt.spec.fields or isinstance(opt.topology, str):
        return None
    try:
        mixing_matrix(opt.topology, workers)
    except TopologyError as exc:
        return f"optimizer.topology: {exc}"
    return None
