"""Advice that does not refuse a configuration, shown before a launch."""

from __future__ import annotations

from training.exchanges.elastic import stability_bound
from training.schema.experiment import ExperimentConfig
from training.schema.lr_scaling import lr_scale

__all__ = ["stability_bound", "topology_problem", "warnings_for"]


def warnings_for(config: ExperimentConfig, workers: int | None = None) -> list[str]:
    """Advice that does not refuse the configuration, shown before launch: the exchange's own
    (training/exchanges/), then what every algorithm shares."""
    opt = config.optimizer
    p = workers or config.resources.workers
    spec = opt.spec
    out = spec.exchange.warnings(opt, p)
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
    if not spec.periodic and opt.tau != 10:
        out.append(
            f"optimizer.tau: ignored by algorithm '{spec.name}' (it communicates every step)"
        )
    return out


def topology_problem(config: ExperimentConfig, workers: int) -> str | None:
    """Why the configuration cannot run on `workers` ranks (a consensus mixing matrix of another
    size: the schema cannot know how many ranks a shell run starts); None when it can."""
    opt = config.optimizer
    return opt.spec.exchange.launch_problem(opt, workers)
