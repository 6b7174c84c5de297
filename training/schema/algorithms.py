"""The algorithm registry: every algorithm declared once.

An *exchange* is what the workers do together, implemented once in `training/exchanges/optimizer.py`
(its equations) and tested against `tests/training/reference.py`. An *algorithm* is an exchange
with the defaults of its inner optimizer: EASGD and EAMSGD share the elastic exchange and differ
in their inner step. The schema (its choice of algorithms, their defaults, the fields a form
shows), the optimizer factory, parameter recording and the benchmark all read `REGISTRY`.

This module imports neither TensorFlow nor Horovod: the schema imports it.

Adding an algorithm: one entry here and its case in the reference test; when it brings new
equations, also an `Exchange` here and its round method in the optimizer, listed in `_ROUNDS`
(with any state of its own created in the optimizer's `build`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

# The optimizer fields every algorithm uses: the inner step (and its rate's schedule).
INNER_FIELDS = ("algorithm", "inner", "learning_rate", "momentum", "lr_scaling", "warmup_steps")
# Inner optimizers that take a momentum; with no momentum given, they use 0.9.
WITH_MOMENTUM = ("momentum", "nesterov", "lars")
# Fields that only one inner optimizer reads: used (shown, recorded) when it is the inner one.
INNER_OPTION_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"lars": ("lars_eta", "lars_weight_decay")}
)
DEFAULT_MOMENTUM = 0.9
# The order in which the center takes the workers' elastic pulls within one round.
ORDERS = ("simultaneous", "round_robin")
_ASYNC = {"asynchronous": "asynchronous", "exchange_precision": "exchange_precision"}


@dataclass(frozen=True)
class Exchange:
    """What workers do together, and when.

    `when` places the round around the inner step of the step with 0-based index t:
    ``every`` (on the gradients, every step, tau unused), ``before`` (on steps with
    t mod tau == 0, with the x at which the step's gradient was taken) or ``after`` (once tau
    inner steps are done: (t + 1) mod tau == 0). An exchange that takes no tau runs its round
    on every step.
    `arguments` maps the optimizer's keyword arguments to the OptimizerConfig fields that give
    them; those fields are what the exchange adds to the inner step's.
    `evaluated`: what is evaluated and exported, the center, its moving average or (no center)
    the worker's own weights, or the workers' mean (computed for evaluation only).
    """

    name: str
    when: Literal["every", "before", "after"]
    evaluated: Literal["center", "average", "weights", "mean"]
    summary: str
    arguments: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arguments", MappingProxyType(dict(self.arguments)))

    @property
    def has_center(self) -> bool:
        return self.evaluated in ("center", "average")

    def communicates(self, t: Any, tau: Any, tau_root: Any = None) -> Any:
        """Whether the step with 0-based index `t` runs a round. `t` may be an int or a tensor:
        the optimizer builds its condition from this same expression. An exchange with a root
        period (the tree) also runs one on the steps of `tau_root`, when it is given."""
        if self.when == "every" or "tau" not in self.arguments:
            return True
        shift = 1 if self.when == "after" else 0
        here = (t + shift) % tau == 0
        if tau_root is None or "tau_root" not in self.arguments:
            return here
        return here | ((t + shift) % tau_root == 0)


_PERIOD = {"tau": "tau"}
EXCHANGES: Mapping[str, Exchange] = MappingProxyType(
    {
        e.name: e
        for e in (
            Exchange(
                "sync",
                "every",
                "weights",
                "gradients averaged by one all-reduce every step (with backup workers: the "
                "mean of the first to arrive, by the center server)",
                {"backup_workers": "backup_workers", "exchange_precision": "exchange_precision"},
            ),
            Exchange(
                "elastic",
                "before",
                "center",
                "every tau steps, the elastic exchange with the center",
                {**_PERIOD, "beta": "beta", "alpha": "alpha", "order": "order", **_ASYNC},
            ),
            Exchange(
                "downpour",
                "after",
                "center",
                "every tau steps, center += sum of the workers' updates; workers restart from it",
                {**_PERIOD, "order": "order", **_ASYNC},
            ),
            Exchange(
                "mdownpour",
                "after",
                "center",
                "as downpour, with Nesterov momentum on the center's update",
                {**_PERIOD, "center_momentum": "momentum"},
            ),
            Exchange(
                "mvadownpour",
                "after",
                "average",
                "as downpour, and a moving average of the center is the model evaluated",
                {**_PERIOD, "average_rate": "average_rate", "order": "order", **_ASYNC},
            ),
            Exchange(
                "adownpour",
                "after",
                "average",
                "as downpour, and the time average of the centers is the model evaluated",
                {**_PERIOD, "order": "order", **_ASYNC},
            ),
            Exchange(
                "localsgd",
                "after",
                "center",
                "every tau steps, every worker is set to the workers' mean",
                _PERIOD,
            ),
            Exchange(
                "tree",
                "before",
                "center",
                "every tau steps, the elastic exchange with the group's center; every tau_root "
                "steps, the group centers' with the root center",
                {
                    **_PERIOD,
                    "beta": "beta",
                    "group_size": "group_size",
                    "tau_root": "tau_root",
                    "beta_root": "beta_root",
                },
            ),
            Exchange(
                "consensus",
                "before",
                "mean",
                "every step, each worker mixes its neighbours' weights with its row of the "
                "topology's mixing matrix",
                {"topology": "topology"},
            ),
            Exchange(
                "mconsensus",
                "before",
                "mean",
                "as consensus, with Nesterov momentum on the mixed step (CDMSGD)",
                {"topology": "topology", "consensus_momentum": "momentum"},
            ),
        )
    }
)


# The exchanges with an asynchronous form (a center server on rank 0, training/center/asynchronous.py):
# those that take the `asynchronous` field.
ASYNCHRONOUS_FORMS = tuple(n for n, e in EXCHANGES.items() if "asynchronous" in e.arguments)


@dataclass(frozen=True)
class AlgorithmSpec:
    """One algorithm: its exchange, and the defaults that differ from the schema's."""

    name: str
    exchange: Exchange
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
                EXCHANGES["sync"],
                "Synchronous SGD: gradients averaged by all-reduce every step (Horovod's own).",
            ),
            AlgorithmSpec(
                "easgd",
                EXCHANGES["elastic"],
                "EASGD: plain SGD on each worker, the elastic exchange with the center every tau "
                "steps.",
            ),
            AlgorithmSpec(
                "eamsgd",
                EXCHANGES["elastic"],
                "EAMSGD: Nesterov momentum (0.99) on each worker, the elastic exchange every tau "
                "steps.",
                {"inner": "nesterov", "momentum": 0.99},
            ),
            AlgorithmSpec(
                "downpour",
                EXCHANGES["downpour"],
                "DOWNPOUR: every tau steps the center adds the workers' updates; workers restart "
                "from it.",
            ),
            AlgorithmSpec(
                "mdownpour",
                EXCHANGES["mdownpour"],
                "MDOWNPOUR: DOWNPOUR with Nesterov momentum (momentum, 0.99 as in the paper) on "
                "the center.",
                {"momentum": 0.99},
            ),
            AlgorithmSpec(
                "mvadownpour",
                EXCHANGES["mvadownpour"],
                "MVADOWNPOUR: DOWNPOUR; the master's moving average of the center (average_rate, "
                "taken at each center update) is evaluated.",
            ),
            AlgorithmSpec(
                "adownpour",
                EXCHANGES["adownpour"],
                "ADOWNPOUR: DOWNPOUR; the master's time average of the centers is evaluated.",
            ),
            AlgorithmSpec(
                "localsgd",
                EXCHANGES["localsgd"],
                "Local SGD: every tau steps every worker is set to the workers' mean.",
            ),
            AlgorithmSpec(
                "tree_easgd",
                EXCHANGES["tree"],
                "Tree EASGD (Zhang's thesis): groups of group_size ranks, each with a group center "
                "(elastic every tau steps); the group centers are elastic with the root center "
                "every tau_root steps.",
            ),
            AlgorithmSpec(
                "cdsgd",
                EXCHANGES["consensus"],
                "CDSGD: every step each worker mixes its neighbours' weights (topology) and takes "
                "its SGD step; no center, the workers' mean is evaluated.",
            ),
            AlgorithmSpec(
                "cdmsgd",
                EXCHANGES["mconsensus"],
                "CDMSGD: CDSGD with Nesterov momentum (momentum, 0.95) on the mixed step.",
                {"momentum": 0.95},
            ),
        )
    }
)
