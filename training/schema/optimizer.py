"""The optimizer section: the inner step, the fields the exchanges share, and each exchange's own
fields, which its module declares (training/exchanges/) and the registry collects."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, create_model, model_validator

from training.exchanges.base import (
    COMPRESSIONS,
    MAX_SHARDS,
    PRECISIONS,
    finite,
    folded_compression,
    moving_rate,
)
from training.exchanges.compression import LEVELS
from training.schema.algorithms import ORDERS, REGISTRY, AlgorithmSpec, exchange_fields
from training.schema.fields import STEPS_MAX, Section, short


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
    ADAMW = "adamw"


def _true_or_false(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"input should be true or false (received: {short(value)})")
    return value


def _not_zero(value: float | None) -> float | None:
    if value == 0:
        raise ValueError(
            "0 is no elastic force at all; for workers that never meet, use localsgd with a "
            "large tau (received: 0)"
        )
    return value


# Plain annotations (int, float | None...) on purpose: the UI builds its form from them.
_SHARED: dict[str, tuple[Any, Any]] = {
    "algorithm": (
        Algorithm,
        Field(
            Algorithm.EAMSGD, description="How workers communicate: sync all-reduce or periodic."
        ),
    ),
    "inner": (
        InnerOptimizer | None,
        Field(
            None, description="Each worker's local optimizer (default depends on the algorithm)."
        ),
    ),
    "learning_rate": finite(float, 0.01, "Learning rate eta of the inner step.", gt=0, le=10),
    "momentum": finite(
        float | None,
        None,
        "Momentum delta (EAMSGD: 0.99 as in the paper; MDOWNPOUR: the center's).",
        ge=0,
        lt=1,
    ),
    "tau": (int, Field(10, ge=1, le=100000, description="Communication period in local steps.")),
    "beta": finite(
        Annotated[float | None, AfterValidator(_not_zero)],
        None,
        ("Moving rate beta = workers x alpha (default 0.9; negative: see docs/algorithms)."),
        ge=-1,
        le=1,
    ),
    "alpha": finite(
        Annotated[float | None, AfterValidator(_not_zero)],
        None,
        "Elastic rate alpha; overrides beta (default beta / workers).",
        ge=-10_000,
        le=10_000,
    ),
    "order": (
        Literal[ORDERS],  # type: ignore[valid-type]
        Field(
            "simultaneous",
            description=(
                "How the center takes the workers' pulls in a round: all at once (the paper's "
                "synchronous EASGD) or round_robin, one rank after another (its stability "
                "analysis)."
            ),
        ),
    ),
    "lr_scaling": (
        Literal["none", "linear", "sqrt"],
        Field(
            "none",
            description="Scale learning_rate with the workers p: x p (linear), x sqrt(p), or none.",
        ),
    ),
    "warmup_steps": (
        int,
        Field(
            0,
            ge=0,
            le=STEPS_MAX,
            description="Steps of linear warm-up from learning_rate to the scaled rate (0: none).",
        ),
    ),
    "lars_eta": finite(
        float, 0.001, "LARS trust coefficient eta (You et al. 2017: 0.001).", gt=0, le=1
    ),
    "lars_weight_decay": finite(
        float,
        0.0,
        "LARS weight decay beta: L2, inside the trust ratio, as in the paper.",
        ge=0,
        le=1,
    ),
    "adamw_weight_decay": finite(
        float,
        0.1,
        "AdamW's decoupled weight decay (DiLoCo's inner optimizer: 0.1 as in the paper).",
        ge=0,
        le=1,
    ),
    "asynchronous": (
        Annotated[bool, BeforeValidator(_true_or_false)],
        Field(
            False,
            description=(
                "Exchange with a center server on rank 0, each worker on its own clock (the "
                "paper's asynchronous EASGD and DOWNPOUR); with order round_robin, workers take "
                "turns."
            ),
        ),
    ),
    "center_shards": (
        int,
        Field(
            1,
            ge=1,
            le=MAX_SHARDS,
            description=(
                "Asynchronous forms: the center split into this many contiguous parts, each held "
                "by the server of one rank (0, 1, ...), so that no one link carries every "
                "worker's traffic."
            ),
        ),
    ),
    "compression": (
        Literal[COMPRESSIONS],  # type: ignore[valid-type]
        Field(
            "none",
            description=(
                "How model-sized messages travel: float16 halves them, int8 and int4 send codes "
                "with a scale per block of 256 values, what rounding loses is sent next time "
                "(error feedback); backup workers: none or float16."
            ),
        ),
    ),
    "overlap_steps": (
        int,
        Field(
            0,
            ge=0,
            le=100000,
            description=(
                "Synchronous elastic, local SGD and DiLoCo rounds: the collective runs behind "
                "this many of the steps that follow (less than tau); 0: within its step. "
                "Elastic averaging keeps the paper's arithmetic; local SGD and DiLoCo apply the "
                "mean that many steps late."
            ),
        ),
    ),
}
# The order the form and the YAML have always shown; the fields of an exchange added later follow.
_ORDER = (
    "algorithm",
    "inner",
    "learning_rate",
    "momentum",
    "tau",
    "beta",
    "alpha",
    "order",
    "average_rate",
    "group_size",
    "tau_root",
    "beta_root",
    "lr_scaling",
    "warmup_steps",
    "lars_eta",
    "lars_weight_decay",
    "adamw_weight_decay",
    "asynchronous",
    "center_shards",
    "compression",
    "overlap_steps",
    "backup_workers",
    "topology",
)


def _algorithms_with(field: str) -> str:
    """The algorithms that read optimizer field `field`, for a refusal to name."""
    return ", ".join(n for n, s in REGISTRY.items() if field in s.fields)


class OptimizerRules(Section):
    """What the optimizer section checks and resolves, whatever exchanges add its fields."""

    @model_validator(mode="before")
    @classmethod
    def _fold_exchange_precision(cls, data: Any) -> Any:
        """`exchange_precision`, compression's older name, read from older files and runs."""
        if not isinstance(data, dict) or "exchange_precision" not in data:
            return data
        data = dict(data)
        precision = data.pop("exchange_precision")
        compression = data.get("compression", "none")
        if precision not in PRECISIONS:
            raise ValueError(
                "exchange_precision (now compression) should be 'float32' or 'float16' "
                f"(received: {short(precision)})"
            )
        if compression in COMPRESSIONS:
            try:
                compression = folded_compression(compression, precision)
            except ValueError as exc:
                raise ValueError(f"{exc} (received: {short(precision)})") from None
        data["compression"] = compression
        return data

    @model_validator(mode="after")
    def _sharded_center(self) -> OptimizerRules:
        if self.center_shards > 1 and not (self.asynchronous and self.served):
            raise ValueError(
                f"center_shards: {self.center_shards} shards split the center server's center, "
                "which only the asynchronous forms have; set asynchronous: true with one of "
                f"{_algorithms_with('center_shards')}, "
                f"or center_shards: 1 (received: {self.center_shards})"
            )
        return self

    @model_validator(mode="after")
    def _compressed_form(self) -> OptimizerRules:
        if self.compression == "none":
            return self
        if "compression" not in self.spec.fields:
            raise ValueError(
                f"compression: algorithm '{self.spec.name}' does not compress its exchange yet; "
                f"choose one of {_algorithms_with('compression')} or compression none "
                f"(received: {self.compression})"
            )
        if self.compression in LEVELS and self.served and not self.spec.exchange.server_codes:
            raise ValueError(
                f"compression: backup workers' server sends every worker the same means, as "
                f"float16 or none, not {self.compression} codes (received: {self.compression})"
            )
        return self

    @model_validator(mode="after")
    def _overlapped_form(self) -> OptimizerRules:
        d = self.overlap_steps
        if not d:
            return self
        if "overlap_steps" not in self.spec.fields or self.served:
            raise ValueError(
                f"overlap_steps: algorithm '{self.spec.name}'"
                f"{' with asynchronous: true' if self.served else ''} cannot overlap its exchange; "
                f"choose one of {_algorithms_with('overlap_steps')} (not "
                f"asynchronous) or overlap_steps 0 (received: {d})"
            )
        if self.order == "round_robin" and "order" in self.spec.fields:
            raise ValueError(
                "overlap_steps: the round-robin order replays every worker on the center at "
                f"once; choose order simultaneous or overlap_steps 0 (received: {d})"
            )
        if d >= self.tau:
            raise ValueError(
                f"overlap_steps: {d} steps would reach the next round (tau is {self.tau}); "
                f"choose overlap_steps from 0 to {self.tau - 1}, or tau of at least {d + 1} "
                f"(received: {d})"
            )
        return self

    @model_validator(mode="after")
    def _asynchronous_form(self) -> OptimizerRules:
        if self.asynchronous and "asynchronous" not in self.spec.fields:
            raise ValueError(
                f"asynchronous: algorithm '{self.spec.name}' has no asynchronous form; choose "
                f"one of {_algorithms_with('asynchronous')} or set asynchronous to false "
                "(received: true)"
            )
        return self

    @model_validator(mode="after")
    def _one_of_alpha_beta(self) -> OptimizerRules:
        if self.alpha is not None and self.beta is not None:
            raise ValueError(
                "set either alpha or beta, not both "
                f"(received alpha={self.alpha}, beta={self.beta})"
            )
        return self

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

    def exchange_arguments(self) -> dict[str, Any]:
        """The exchange's keyword arguments, from the fields that give them."""
        resolved = {**self.model_dump(), "momentum": self.resolved_momentum}
        return {arg: resolved[f] for arg, f in self.spec.exchange.arguments.items()}

    @property
    def served(self) -> bool:
        """Whether rank 0's center server carries the communication (training/center/)."""
        return self.spec.exchange.uses_server(self.exchange_arguments())

    def check_workers(self, workers: int) -> None:
        """The exchange's checks against the workers the run will have (ValueError)."""
        if self.center_shards > workers:
            raise ValueError(
                f"optimizer.center_shards: {self.center_shards} shards need as many ranks, one "
                f"server each, and the run has {workers} workers; choose 1 to {workers} "
                f"(received: {self.center_shards})"
            )
        self.spec.exchange.check(self, workers)

    def resolved_alpha(self, workers: int) -> float:
        if self.alpha is not None:
            return self.alpha
        return moving_rate(self.beta, workers)


def _fields() -> dict[str, tuple[Any, Any]]:
    fields = {**_SHARED, **exchange_fields()}
    ranked = {name: _ORDER.index(name) if name in _ORDER else len(_ORDER) for name in fields}
    return {name: fields[name] for name in sorted(fields, key=ranked.__getitem__)}


OptimizerConfig = create_model(
    "OptimizerConfig", __base__=OptimizerRules, __module__=__name__, **_fields()
)
