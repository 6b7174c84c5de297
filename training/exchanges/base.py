"""The exchange: what the workers do together, declared once and run by the wrapper optimizer.

An exchange class has two sides. Its *declaration*, class attributes and class methods, is what
the registry (`training.schema.algorithms`), the schema's optimizer section, the form and the
launch checks read, in processes that never import TensorFlow: when its round runs, what is
evaluated, the configuration fields it adds (pydantic definitions), which keyword arguments they
give, its form on the center server, its checks and its warnings. Its *instance* runs in the ranks:
`ElasticAveragingOptimizer` (training/exchanges/optimizer.py) holds one and delegates to it, as
Keras' LossScaleOptimizer delegates to its inner optimizer; a variant overrides what differs, as
torchft's DiLoCo overrides LocalSGD's sync.

TensorFlow, Keras and the collectives are reached through `lazy`, a module name that imports its
module on the first attribute read. `import training.schema` imports every exchange module and must
load neither TensorFlow nor Horovod (tests/test_boundaries.py). Imports inside each method would
repeat in every round, and `importlib.util.LazyLoader` puts a module into `sys.modules` before it is
used, which is what that test looks for.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

# The order in which the center takes the workers' elastic pulls within one round.
ORDERS = ("simultaneous", "round_robin")
PRECISIONS = ("float32", "float16")
# How model-sized messages travel (training/exchanges/compression.py).
COMPRESSIONS = ("none", "float16", "int8", "int4")
# Servers a sharded center may have (one per rank).
MAX_SHARDS = 1024
# The paper's symmetric moving rate: beta = workers x alpha.
DEFAULT_BETA = 0.9


def moving_rate(beta: float | None, count: int) -> float:
    """alpha = beta / count: the elastic rate of each of `count` parties pulled by one center."""
    return (DEFAULT_BETA if beta is None else beta) / count


def finite(annotation: Any, default: Any, description: str, **bounds: Any) -> tuple[Any, Any]:
    """A number field that refuses infinities and NaN, as (annotation, Field), the way the
    optimizer section's fields are declared: no rate or coefficient is meant to be infinite."""
    return annotation, Field(default, allow_inf_nan=False, description=description, **bounds)


class _Lazy:
    def __init__(self, name: str):
        self._name = name
        self._loaded: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._loaded is None:
            self._loaded = importlib.import_module(self._name)
        value = getattr(self._loaded, attribute)
        setattr(self, attribute, value)  # the next read is a plain attribute
        return value


def lazy(name: str) -> Any:
    """The module `name`, imported when first used."""
    return _Lazy(name)


tf = lazy("tensorflow")
keras = lazy("keras")
collectives = lazy("training.exchanges.collectives")


class Exchange:
    """One family of exchanges. Subclasses set the declaration and override the rounds.

    `when` places the round around the inner step of the step with 0-based index t: ``every``
    (on the gradients, every step), ``before`` (on steps with t mod tau == 0, with the x at which
    the step's gradient was taken) or ``after`` (once tau inner steps are done:
    (t + 1) mod tau == 0). An exchange that takes no tau runs its round on every step.
    `evaluated`: what is evaluated and exported, the center, its moving average, the worker's own
    weights, or the workers' mean (computed for evaluation only).
    `fields`: the optimizer section's fields this exchange adds, as (annotation, Field(...)).
    `arguments`: its keyword arguments and the optimizer fields that give them.
    `server`: its form on the center server (training/center/server.py), the server's kind and
    the average it keeps, or None; `served_spread`: whether that form measures the workers'
    spread (from the elastic forces it receives).
    """

    name: ClassVar[str]
    when: ClassVar[Literal["every", "before", "after"]]
    evaluated: ClassVar[Literal["center", "average", "weights", "mean"]]
    fields: ClassVar[Mapping[str, tuple[Any, FieldInfo]]] = MappingProxyType({})
    arguments: ClassVar[Mapping[str, str]] = MappingProxyType({})
    server: ClassVar[tuple[str, str | None] | None] = None
    served_spread: ClassVar[bool] = False
    # Whether its server form takes int8/int4 codes (with error feedback both ways).
    server_codes: ClassVar[bool] = True
    # Whether a compressed sender keeps a residual (error feedback), or replicas do that work.
    feedback: ClassVar[bool] = True
    # Whether its synchronous round can run behind the steps that follow (`overlap_steps`,
    # training/exchanges/overlap.py): it then posts in `round` and lands in `land`.
    overlaps: ClassVar[bool] = False
    has_center: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fields = MappingProxyType(dict(cls.fields))
        cls.arguments = MappingProxyType(dict(cls.arguments))
        cls.has_center = getattr(cls, "evaluated", None) in ("center", "average")

    # -- the declaration: read without TensorFlow ----------------------------------------------

    @classmethod
    def communicates(cls, t: Any, tau: Any, tau_root: Any = None) -> Any:
        """Whether the step with 0-based index `t` runs a round. `t` may be an int or a tensor:
        the optimizer builds its condition from this same expression. An exchange with a root
        period (the tree) also runs one on the steps of `tau_root`, when it is given."""
        if cls.when == "every" or "tau" not in cls.arguments:
            return True
        shift = 1 if cls.when == "after" else 0
        here = (t + shift) % tau == 0
        if tau_root is None or "tau_root" not in cls.arguments:
            return here
        return here | ((t + shift) % tau_root == 0)

    @classmethod
    def uses_server(cls, arguments: Mapping[str, Any]) -> bool:
        """Whether these arguments put the exchange on the center server (asynchronous forms)."""
        return bool(arguments.get("asynchronous"))

    @classmethod
    def check(cls, opt: Any, workers: int) -> None:
        """The schema's checks of an optimizer section `opt` against the workers it will have:
        raise ValueError("optimizer.<field>: ...") to refuse it."""

    @classmethod
    def launch_problem(cls, opt: Any, workers: int) -> str | None:
        """Why `opt` cannot run on the `workers` ranks a launch really has (the schema cannot
        know how many a shell run starts), or None."""
        return None

    @classmethod
    def warnings(cls, opt: Any, workers: int) -> list[str]:
        """Advice on `opt` for `workers` workers that does not refuse it."""
        return []

    @classmethod
    def refuse_elsewhere(cls, exchange: str, arguments: Mapping[str, Any]) -> None:
        """Refuse this exchange's own `arguments` given to another exchange, where ignoring them
        would hide a mistake. Most are ignored, as a saved model's configuration holds them."""

    @classmethod
    def init_collectives(cls, arguments: Mapping[str, Any], broadcast: bool = True) -> None:
        """Start Horovod as this exchange needs it (the tree registers its process sets)."""
        collectives.init()

    # -- the instance: in the ranks, with TensorFlow --------------------------------------------

    def __init__(
        self,
        *,
        tau: int = 10,
        beta: float | None = None,
        alpha: float | None = None,
        order: str = "simultaneous",
        asynchronous: bool = False,
        compression: str = "none",
        exchange_precision: str | None = None,
        center_shards: int = 1,
        overlap_steps: int = 0,
    ):
        """The arguments every exchange shares, checked as the optimizer's; each exchange keeps
        those it uses (`arguments`) in its configuration. `exchange_precision` is compression's
        older name, which saved models' configurations still hold."""
        if alpha is not None and beta is not None:
            raise ValueError(f"Give beta or alpha, not both. Received: beta={beta}, alpha={alpha}")
        # A negative rate is the thesis' link between EASGD and momentum SGD: allowed.
        if beta is not None and not (-1 <= beta <= 1 and beta != 0):
            raise ValueError(f"beta must be in [-1, 1] and not 0. Received: beta={beta}")
        if alpha is not None and alpha == 0:
            raise ValueError(f"alpha must not be 0. Received: alpha={alpha}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}. Received: order={order!r}")
        compression = folded_compression(compression, exchange_precision)
        if not isinstance(center_shards, int) or not 1 <= center_shards <= MAX_SHARDS:
            raise ValueError(
                f"center_shards must be an integer from 1 to {MAX_SHARDS}. Received: "
                f"center_shards={center_shards!r}"
            )
        self.center_shards = center_shards
        bad = not isinstance(overlap_steps, int) or isinstance(overlap_steps, bool)
        if bad or overlap_steps < 0 or (self.overlaps and overlap_steps >= max(tau, 1)):
            raise ValueError(
                "overlap_steps must be an integer from 0 to tau - 1 (a round lands before the "
                f"next one starts). Received: overlap_steps={overlap_steps!r}, tau={tau}"
            )
        self.overlap_steps = overlap_steps
        self.flight: Any = None
        self.tau, self.beta, self.alpha, self.order = tau, beta, alpha, order
        self.asynchronous = bool(asynchronous)
        self.compression = compression
        self.compressed: Any = None
        self.workers = 0
        self.center: list = []
        self.average: list = []
        self.mean: list = []
        self.replicas: list[list] = []

    @property
    def wire_precision(self) -> str:
        """How the center server's model-sized messages travel (training/center/protocol.py)."""
        return "float32" if self.compression == "none" else self.compression

    def start(self, broadcast: bool) -> None:
        """Once the wrapper is made: Horovod, and what depends on the number of workers."""
        self.init_collectives(self.get_config(), broadcast)
        self.resolve(collectives.size())

    def resolve(self, workers: int) -> None:
        self.workers = workers
        if self.alpha is not None:
            self.alpha = float(self.alpha)
        else:
            self.alpha = moving_rate(self.beta, workers)

    @property
    def served(self) -> bool:
        return self.uses_server(self.get_config())

    def get_config(self) -> dict[str, Any]:
        """The arguments a saved model's optimizer is made again with (tau is the wrapper's)."""
        return {arg: getattr(self, arg) for arg in self.arguments if arg != "tau"}

    def build(self, opt: Any, var_list: list) -> None:
        """This exchange's state, as variables of the wrapper `opt` (so checkpoints hold them).
        Every list in `replicas` starts equal to the weights."""
        if self.evaluated == "mean":
            self.mean = [opt.add_variable_from_reference(v, name="mean") for v in var_list]
        if self.has_center:
            self.center = [opt.add_variable_from_reference(v, name="center") for v in var_list]
        if self.evaluated == "average":
            self.average = [opt.add_variable_from_reference(v, name="average") for v in var_list]
        self.replicas = [self.mean, self.center, self.average]
        if self.compression != "none" and not self.served:
            from training.exchanges.compression import Compressed

            self.compressed = Compressed(
                self.compression, opt, var_list, self.name, feedback=self.feedback
            )
        if self.overlap_steps and not self.served:
            from training.exchanges.overlap import Flight

            self.flight = Flight(self, opt, var_list, self.overlap_steps)

    def sum_all(self, opt: Any, values: list, name: str) -> tuple[list, list, int, Any]:
        """Every rank's `values` summed in one collective: (this rank's values as the sum
        counts them, decoded when compressed; the sum; payload bytes; seconds)."""
        if self.compressed is None:
            summed, nbytes, seconds = collectives.timed_sum(values, name)
            return values, summed, nbytes, seconds
        own, messages, nbytes, seconds = self.compressed.send(opt, values, f"{name}_q")
        return own, total(messages), nbytes, seconds

    def due(self, step: Any) -> Any:
        """Whether the step with 0-based index `step` runs a round (a tensor inside the step)."""
        return self.communicates(step, self.tau)

    def round(self, opt: Any, values: list) -> Any:
        """The equations: on the gradients (`when` "every"; returns them) or on the variables
        (returns the seconds the round's collectives took)."""
        raise NotImplementedError

    def land(self, opt: Any, variables: list, summed: list, sent: list) -> None:
        """An overlapped round's second half, steps after `round` posted `sent` (this rank's
        message as every rank decoded it): `summed` is every rank's message summed."""
        raise NotImplementedError

    def after_inner(self, opt: Any, variables: list) -> None:
        """After the inner step of every step, inside the training step's graph."""
        return  # AutoGraph cannot convert a function whose body is a docstring alone

    def evaluation_variables(self, opt: Any) -> list:
        return {
            "center": self.center,
            "average": self.average,
            "weights": opt._trainable_variables,
            "mean": self.mean,
        }[self.evaluated]

    def prepare_evaluation(self, opt: Any) -> None:
        """Every rank, before `evaluation_variables` are read."""

    def restart(self, variables: list) -> None:
        """After a resume with another number of workers set `variables` to the evaluated model:
        the state that follows the workers follows them. Every rank restored rank 0's state:
        a residual of rounding is rank 0's own, so it starts again at 0."""
        if self.compressed is not None:
            self.compressed.reset()

    def communication(self) -> dict[str, float]:
        """Figures of this exchange's own, beside the wrapper's bytes, seconds and rounds."""
        return {}

    def server_options(self) -> dict[str, Any]:
        """What the center server and each worker's side of it take from this exchange."""
        return {}


class Flat:
    """Variables' values as one flat float32 vector, and back: how a model-sized message is
    sent."""

    def __init__(self, var_list: list):
        self.shapes = [v.shape for v in var_list]
        self.sizes = [v.shape.num_elements() for v in var_list]
        self.size = sum(self.sizes)

    def flat(self, values: list) -> Any:
        return tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in values], 0)

    def shaped(self, flat: Any, dtypes: list) -> list:
        parts = tf.split(flat, self.sizes)
        return [tf.cast(tf.reshape(p, s), d) for p, s, d in zip(parts, self.shapes, dtypes)]


def total(messages: list) -> list:
    """The sum of decoded messages, value by value, in their order (the same on every rank)."""
    out = list(messages[0])
    for message in messages[1:]:
        out = [a + b for a, b in zip(out, message)]
    return out


def folded_compression(compression: str, exchange_precision: str | None = None) -> str:
    """`compression`, with the older `exchange_precision` folded into it (float16 is the
    compression float16, float32 none); a contradiction between them is refused."""
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {COMPRESSIONS}. Received: compression={compression!r}"
        )
    if exchange_precision is None:
        return compression
    if exchange_precision not in PRECISIONS:
        raise ValueError(
            "exchange_precision (now compression) must be 'float32' or 'float16'. Received: "
            f"{exchange_precision!r}"
        )
    if exchange_precision == "float32":  # the older default: nothing asked
        return compression
    folded = "float16"
    if compression not in ("none", folded):
        raise ValueError(
            f"exchange_precision {exchange_precision!r} contradicts compression "
            f"{compression!r}; give compression alone"
        )
    return compression if compression != "none" else folded


def _look_ahead(inner: Any, variables: list) -> list | None:
    """delta m for each variable when `inner` is Keras' Nesterov SGD, else None."""
    if not (isinstance(inner, keras.optimizers.SGD) and inner.nesterov and inner.momentum):
        return None
    delta = inner.momentum
    return [
        tf.cast(delta, x.dtype) * inner.momentums[inner._get_variable_index(x)].value
        for x in variables
    ]


def force_points(inner: Any, variables: list) -> list:
    """The x on which an elastic force acts: Keras' Nesterov SGD holds y = x + delta m in the
    variable (m its momentum slot), so for it x = y - delta m; else x itself."""
    ahead = _look_ahead(inner, variables)
    if ahead is None:
        return [x.value for x in variables]
    return [x.value - a for x, a in zip(variables, ahead)]


def restart_points(inner: Any, variables: list, values: list) -> list:
    """What to assign to `variables` so that their x is `values` (a worker restarting from the
    center): for Keras' Nesterov SGD y = x + delta m, its momentum kept; else the values."""
    ahead = _look_ahead(inner, variables)
    if ahead is None:
        return list(values)
    return [v + a for v, a in zip(values, ahead)]
