"""The optimizer section: the inner step, and the algorithm with its exchange's fields."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from training.schema.algorithms import ORDERS, REGISTRY, AlgorithmSpec
from training.schema.fields import STEPS_MAX, Section, short
from training.schema.topology import TopologyError
from training.schema.topology import parse as parse_topology


class _AlgorithmName(StrEnum):
    @property
    def spec(self) -> AlgorithmSpec:
        return REGISTRY[self.value]


# The schema's algorithms are the registry's, in its order (a str enum, as the form expects).
Algorithm = _AlgorithmName(
    "Algorithm", [(name.upper(), name) for name in REGISTRY], module=__name__
)


class InnerOptimizer(StrEnum):
    SGD = "sgd"
    MOMENTUM = "momentum"
    NESTEROV = "nesterov"
    ADAM = "adam"
    LARS = "lars"


class OptimizerConfig(Section):
    algorithm: Algorithm = Field(
        Algorithm.EAMSGD, description="How workers communicate: sync all-reduce or periodic."
    )
    inner: InnerOptimizer | None = Field(
        None, description="Each worker's local optimizer (default depends on the algorithm)."
    )
    learning_rate: float = Field(
        0.01, allow_inf_nan=False, gt=0, le=10, description="Learning rate eta of the inner step."
    )
    momentum: float | None = Field(
        None,
        allow_inf_nan=False,
        ge=0,
        lt=1,
        description="Momentum delta (EAMSGD: 0.99 as in the paper; MDOWNPOUR: the center's).",
    )
    tau: int = Field(10, ge=1, le=100000, description="Communication period in local steps.")
    beta: float | None = Field(
        None,
        allow_inf_nan=False,
        ge=-1,
        le=1,
        description="Moving rate beta = workers x alpha (default 0.9; negative: see the README).",
    )
    alpha: float | None = Field(
        None,
        allow_inf_nan=False,
        ge=-10_000,
        le=10_000,
        description="Elastic rate alpha; overrides beta (default beta / workers).",
    )
    order: Literal[ORDERS] = Field(  # type: ignore[valid-type]
        "simultaneous",
        description=(
            "How the center takes the workers' pulls in a round: all at once (the paper's "
            "synchronous EASGD) or round_robin, one rank after another (its stability analysis)."
        ),
    )
    average_rate: float = Field(
        0.001,
        allow_inf_nan=False,
        gt=0,
        le=1,
        description="Moving-average rate of MVADOWNPOUR's evaluated model.",
    )
    group_size: int | None = Field(
        None,
        ge=1,
        le=1024,
        description=(
            "Tree EASGD: ranks per group, a divisor of the workers (default: the ranks of one "
            "host)."
        ),
    )
    tau_root: int = Field(
        10,
        ge=1,
        le=100000,
        description="Tree EASGD: steps between the group centers' exchanges with the root center.",
    )
    beta_root: float | None = Field(
        None,
        allow_inf_nan=False,
        gt=0,
        le=1,
        description="Tree EASGD: root moving rate, beta_root = groups x alpha_root (default 0.9).",
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none",
        description="Scale learning_rate with the workers p: x p (linear), x sqrt(p), or none.",
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        le=STEPS_MAX,
        description="Steps of linear warm-up from learning_rate to the scaled rate (0: none).",
    )
    lars_eta: float = Field(
        0.001,
        allow_inf_nan=False,
        gt=0,
        le=1,
        description="LARS trust coefficient eta (You et al. 2017: 0.001).",
    )
    lars_weight_decay: float = Field(
        0.0,
        allow_inf_nan=False,
        ge=0,
        le=1,
        description="LARS weight decay beta: L2, inside the trust ratio, as in the paper.",
    )

    asynchronous: bool = Field(
        False,
        description=(
            "Exchange with a center server on rank 0, each worker on its own clock (the paper's "
            "asynchronous EASGD and DOWNPOUR); with order round_robin, workers take turns."
        ),
    )

    exchange_precision: Literal["float32", "float16"] = Field(
        "float32",
        description=(
            "Precision of the center server's model-sized messages (asynchronous forms, backup "
            "workers): float16 halves their bytes."
        ),
    )
    backup_workers: int = Field(
        0,
        ge=0,
        le=1023,
        description=(
            "Synchronous SGD with backup workers (Chen et al. 2016): each step applies the mean "
            "of the first workers - backup_workers gradients to arrive; late ones are dropped."
        ),
    )

    topology: Literal["ring", "full"] | list[list[float]] = Field(
        "ring",
        description=(
            "CDSGD's fixed topology: ring or full (Metropolis-Hastings weights), or a workers x "
            "workers doubly stochastic mixing matrix as a list of rows: [[0.5, 0.5], [0.5, 0.5]]."
        ),
    )

    @field_validator("topology", mode="before")
    @classmethod
    def _topology(cls, value: Any) -> Any:
        try:
            return parse_topology(value)
        except TopologyError as exc:
            raise ValueError(f"{exc} (received: {short(value)})") from None

    @field_validator("asynchronous", mode="before")
    @classmethod
    def _true_or_false(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"input should be true or false (received: {short(value)})")
        return value

    @model_validator(mode="after")
    def _asynchronous_form(self) -> OptimizerConfig:
        if self.asynchronous and "asynchronous" not in self.spec.fields:
            forms = [n for n, s in REGISTRY.items() if "asynchronous" in s.fields]
            raise ValueError(
                f"asynchronous: algorithm '{self.spec.name}' has no asynchronous form; choose "
                f"one of {', '.join(forms)} or set asynchronous to false (received: true)"
            )
        return self

    @model_validator(mode="after")
    def _one_of_alpha_beta(self) -> OptimizerConfig:
        if self.alpha is not None and self.beta is not None:
            raise ValueError(
                "set either alpha or beta, not both "
                f"(received alpha={self.alpha}, beta={self.beta})"
            )
        return self

    @field_validator("alpha", "beta")
    @classmethod
    def _not_zero(cls, value: float | None) -> float | None:
        if value == 0:
            raise ValueError(
                "0 is no elastic force at all; for workers that never meet, use localsgd with a "
                "large tau (received: 0)"
            )
        return value

    @property
    def spec(self) -> AlgorithmSpec:
        return self.algorithm.spec

    @property
    def resolved_inner(self) -> InnerOptimizer:
        """The inner optimizer: the configuration's, else the algorithm's default."""
        return self.inner or InnerOptimizer(self.spec.inner())

    @property
    def resolved_momentum(self) -> float:
        if self.momentum is not None:
            return self.momentum
        return self.spec.momentum(self.resolved_inner.value)

    @property
    def uses_backup_workers(self) -> bool:
        return "backup_workers" in self.spec.fields and self.backup_workers > 0

    @property
    def served(self) -> bool:
        """Whether rank 0's center server carries the communication (training/center/asynchronous.py)."""
        return self.asynchronous or self.uses_backup_workers

    def resolved_alpha(self, workers: int) -> float:
        if self.alpha is not None:
            return self.alpha
        return (self.beta if self.beta is not None else 0.9) / workers
