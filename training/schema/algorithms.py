"""The algorithm registry: every exchange and every algorithm declared once.

An *exchange* is what the workers do together: one class in its own module of
training/exchanges/ (its fields, checks, state, equations and server form), tested against
tests/training/reference*.py. An *algorithm* is an exchange with the defaults of its inner
optimizer: EASGD and EAMSGD share the elastic exchange and differ in their inner step. The schema
(its choice of algorithms, their defaults, the fields a form shows), the optimizer factory,
parameter recording and the benchmark all read `REGISTRY`.

This module imports neither TensorFlow nor Horovod: the schema imports it, and the exchange
modules import those only when a rank runs them.

Adding an algorithm: its entry in `REGISTRY` and its case in the reference test; when it brings
new equations, also its exchange module, listed in `EXCHANGES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from training.exchanges.base import ORDERS, Exchange
from training.exchanges.consensus import Consensus, MConsensus
from training.exchanges.diloco import DiLoCo
from training.exchanges.downpour import ADownpour, Downpour, MDownpour, MVADownpour
from training.exchanges.elastic import Elastic
from training.exchanges.localsgd import LocalSGD
from training.exchanges.sync import Sync
from training.exchanges.tree import Tree

__all__ = ["ORDERS", "Exchange"]

# The optimizer fields every algorithm uses: the inner step (and its rate's schedule).
INNER_FIELDS = ("algorithm", "inner", "learning_rate", "momentum", "lr_scaling", "warmup_steps")
# Inner optimizers that take a momentum; with no momentum given, they use 0.9.
WITH_MOMENTUM = ("momentum", "nesterov", "lars")
# Fields that only one inner optimizer reads: used (shown, recorded) when it is the inner one.
INNER_OPTION_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"lars": ("lars_eta", "lars_weight_decay"), "adamw": ("adamw_weight_decay",)}
)
DEFAULT_MOMENTUM = 0.9

EXCHANGES: Mapping[str, type[Exchange]] = MappingProxyType(
    {
        e.name: e
        for e in (
            Sync,
            Elastic,
            Downpour,
            MDownpour,
            MVADownpour,
            ADownpour,
            LocalSGD,
            DiLoCo,
            Tree,
            Consensus,
            MConsensus,
        )
    }
)


# The exchanges with an asynchronous form (a center server on rank 0, training/center/asynchronous.py):
# those that take the `asynchronous` field.
ASYNCHRONOUS_FORMS = tuple(n for n, e in EXCHANGES.items() if "asynchronous" in e.arguments)


def exchange_fields() -> dict[str, tuple[Any, Any]]:
    """The optimizer fields the exchanges add, by name, in the registry's order. A field two
    exchanges declare (a variant inherits its family's) must be one definition."""
    out: dict[str, tuple[Any, Any]] = {}
    for exchange in EXCHANGES.values():
        for name, definition in exchange.fields.items():
            if out.setdefault(name, definition) is not definition:
                raise TypeError(f"exchange {exchange.name!r} defines field {name!r} again")
    return out


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm: its exchange, and the defaults that differ from the schema's."""

    name: str
    exchange: type[Exchange]
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def fields(self) -> tuple[str, ...]:
        """The OptimizerConfig fields this algorithm reads: the inner step's and its exchange's."""
        extra = [f for f in self.exchange.arguments.values() if f not in INNER_FIELDS]
        return INNER_FIELDS + tuple(dict.fromkeys(extra))

    def fields_with(self, inner: str | None) -> tuple[str, ...]:
        """`fields`, and those the inner optimizer `inner` (default: this algorithm's) adds."""
        return self.fields + INNER_OPTION_FIELDS.get(inner or self.inner(), ())

    @property
    def has_center(self) -> bool:
        return self.exchange.has_center

    @property
    def evaluated(self) -> str:
        return self.exchange.evaluated

    @property
    def periodic(self) -> bool:
        return "tau" in self.fields

    def communicates(self, t: Any, tau: Any, tau_root: Any = None) -> Any:
        """Whether the step with 0-based index `t` communicates, with period `tau` (and the
        tree's root period `tau_root`)."""
        return self.exchange.communicates(t, tau, tau_root)

    def inner(self) -> str:
        """The inner optimizer when the configuration names none."""
        return self.defaults.get("inner", "sgd")

    def momentum(self, inner: str) -> float:
        """The momentum when the configuration gives none, for the inner optimizer `inner`."""
        if "momentum" in self.defaults:
            return self.defaults["momentum"]
        return DEFAULT_MOMENTUM if inner in WITH_MOMENTUM else 0.0


REGISTRY: Mapping[str, AlgorithmSpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            AlgorithmSpec(
                "sync",
                Sync,
                "Synchronous SGD: gradients averaged by all-reduce every step (Horovod's own).",
            ),
            AlgorithmSpec(
                "easgd",
                Elastic,
                "EASGD: plain SGD on each worker, the elastic exchange with the center every tau "
                "steps.",
            ),
            AlgorithmSpec(
                "eamsgd",
                Elastic,
                "EAMSGD: Nesterov momentum (0.99) on each worker, the elastic exchange every tau "
                "steps.",
                {"inner": "nesterov", "momentum": 0.99},
            ),
            AlgorithmSpec(
                "downpour",
                Downpour,
                "DOWNPOUR: every tau steps the center adds the workers' updates; workers restart "
                "from it.",
            ),
            AlgorithmSpec(
                "mdownpour",
                MDownpour,
                "MDOWNPOUR: DOWNPOUR with Nesterov momentum (momentum, 0.99 as in the paper) on "
                "the center.",
                {"momentum": 0.99},
            ),
            AlgorithmSpec(
                "mvadownpour",
                MVADownpour,
                "MVADOWNPOUR: DOWNPOUR; the master's moving average of the center (average_rate, "
                "taken at each center update) is evaluated.",
            ),
            AlgorithmSpec(
                "adownpour",
                ADownpour,
                "ADOWNPOUR: DOWNPOUR; the master's time average of the centers is evaluated.",
            ),
            AlgorithmSpec(
                "localsgd",
                LocalSGD,
                "Local SGD: every tau steps every worker is set to the workers' mean.",
            ),
            AlgorithmSpec(
                "diloco",
                DiLoCo,
                "DiLoCo (Douillard et al. 2023): tau inner AdamW steps, then the workers' mean "
                "move is the outer gradient of a Nesterov step (outer_learning_rate 0.7, "
                "outer_momentum 0.9); workers restart from its result.",
                {"inner": "adamw"},
            ),
            AlgorithmSpec(
                "tree_easgd",
                Tree,
                "Tree EASGD (Zhang's thesis): groups of group_size ranks, each with a group center "
                "(elastic every tau steps); the group centers are elastic with the root center "
                "every tau_root steps.",
            ),
            AlgorithmSpec(
                "cdsgd",
                Consensus,
                "CDSGD: every step each worker mixes its neighbours' weights (topology) and takes "
                "its SGD step; no center, the workers' mean is evaluated.",
            ),
            AlgorithmSpec(
                "cdmsgd",
                MConsensus,
                "CDMSGD: CDSGD with Nesterov momentum (momentum, 0.95) on the mixed step.",
                {"momentum": 0.95},
            ),
        )
    }
)


# What communicating less is measured against: synchronous all-reduce SGD (Compare's default
# baseline).
BASELINE = next(name for name, s in REGISTRY.items() if s.exchange is Sync)


def algorithm_of(exchange: str, inner: str) -> str:
    """The algorithm an optimizer built outside a configuration runs (a script's
    `eamsgd(...)`): of those with its exchange, the one whose inner optimizer is `inner`, else
    the first; the exchange's own name when no algorithm has it."""
    found = [s for s in REGISTRY.values() if s.exchange.name == exchange]
    same = [s for s in found if s.inner() == inner]
    return (same or found)[0].name if found else exchange
