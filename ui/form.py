"""The Launch form, generated from the training configuration schema (never written twice).

`field_specs()` is pure: it reads the pydantic models and returns what each widget needs:
kind, choices, default, range and one-line help.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import annotated_types
import yaml
from pydantic import BaseModel

from training.schema import ConfigError, ExperimentConfig, RegistryChoice

SECTIONS = ("data", "model", "optimizer", "training", "checkpoint", "resources")
# Where a field's own name would be ambiguous on the page.
LABELS = {
    "name": "run name",
    "model.name": "model",
    "checkpoint.every": "checkpoint every",
    "checkpoint.keep": "checkpoints kept",
    "training.eval_every": "evaluate every",
    "training.log_every": "log every",
    "optimizer.inner": "inner optimizer",
    "optimizer.algorithm": "algorithm",
    "data.path": "data file (.npz)",
    "optimizer.lr_scaling": "learning-rate scaling",
    "optimizer.warmup_steps": "warm-up steps",
    "optimizer.lars_eta": "LARS trust coefficient (eta)",
    "optimizer.lars_weight_decay": "LARS weight decay",
    "optimizer.adamw_weight_decay": "AdamW weight decay",
}
TOP_LEVEL = ("name", "seed")


@dataclass(frozen=True)
class FieldSpec:
    path: str
    kind: Literal["choice", "int", "float", "bool", "text", "int_list", "yaml"]
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False

    @property
    def label(self) -> str:
        return LABELS.get(self.path, self.path.rsplit(".", 1)[-1].replace("_", " "))

    @property
    def range_text(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>' if self.exclusive_min else '>='} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{'<' if self.exclusive_max else '<='} {self.maximum:g}")
        return " and ".join(parts)

    @property
    def step(self) -> int | float | None:
        """The widget's step: one for integers and for a float counted in whole units (epochs,
        which may still be fractional); Streamlit's own (0.01) for rates."""
        if self.kind == "int":
            return 1
        if self.kind == "float" and isinstance(self.default, int | float) and self.default >= 1:
            return 1.0 if float(self.default).is_integer() else None
        return None

    @property
    def full_help(self) -> str:
        extra = [f"range: {self.range_text}"] if self.range_text else []
        if self.optional:
            extra.append("leave empty for the default")
        return self.help + (f" ({'; '.join(extra)})" if extra else "")


def _unwrap(annotation) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _spec(path: str, field) -> FieldSpec:
    ann, optional = _unwrap(field.annotation)
    default = field.get_default(call_default_factory=True)
    if isinstance(default, Enum):
        default = default.value
    lo = hi = None
    ex_lo = ex_hi = False
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, ex_lo = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, ex_hi = m.lt, True
    common = dict(
        path=path,
        default=default,
        help=field.description or "",
        optional=optional,
        minimum=lo,
        maximum=hi,
        exclusive_min=ex_lo,
        exclusive_max=ex_hi,
    )
    if typing.get_origin(ann) is dict or any(
        typing.get_origin(a) is list for a in typing.get_args(field.annotation)
    ):
        # A name or a structure (optimizer.topology: ring, full or a matrix), typed as YAML.
        return FieldSpec(kind="yaml", **common)
    if typing.get_origin(ann) is Literal:
        return FieldSpec(kind="choice", choices=typing.get_args(ann), **common)
    for m in field.metadata:
        if isinstance(m, RegistryChoice):  # a dataset or a model: the registry's names now
            return FieldSpec(kind="choice", choices=m.choices, **common)
    if isinstance(ann, type) and issubclass(ann, Enum):
        choices = tuple(e.value for e in ann)
        return FieldSpec(kind="choice", choices=((None,) if optional else ()) + choices, **common)
    if ann is bool:
        return FieldSpec(kind="bool", **common)
    if ann is int:
        return FieldSpec(kind="int", **common)
    if ann is float:
        return FieldSpec(kind="float", **common)
    if typing.get_origin(ann) is list:
        return FieldSpec(kind="int_list", **common)
    return FieldSpec(kind="text", **common)


def field_specs() -> dict[str, FieldSpec]:
    """Every editable field of the schema, by dotted path (tags are left to the YAML editor)."""
    out: dict[str, FieldSpec] = {}
    fields = ExperimentConfig.model_fields
    for name in TOP_LEVEL:
        out[name] = _spec(name, fields[name])
    for section in SECTIONS:
        model: type[BaseModel] = fields[section].annotation
        for name, f in model.model_fields.items():
            out[f"{section}.{name}"] = _spec(f"{section}.{name}", f)
    return out


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{'optimizer.tau': 4} -> {'optimizer': {'tau': 4}}, dropping empty optional values."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        if value is None or value == "":
            continue
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flat_values(config: dict[str, Any]) -> dict[str, Any]:
    """The form's values for a configuration (the inverse of `nested` on schema fields)."""
    specs = field_specs()
    out = {}
    for path in specs:
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[path] = node.value if isinstance(node, Enum) else node
    return out


def errors_by_field(error: ConfigError | None) -> dict[str, list[str]]:
    """A ConfigError's reasons keyed by the field path each one names."""
    out: dict[str, list[str]] = {}
    for path, reason in error.by_field() if error else []:
        out.setdefault(path, []).append(reason)
    return out


def widget_value(spec: FieldSpec, value: Any) -> Any:
    """A configuration's value as its widget holds it: lists and mappings as text, floats as
    floats (a float widget given the schema's integer default would be an integer widget)."""
    if spec.kind == "int_list":
        return ", ".join(str(v) for v in value or [])
    if spec.kind == "text":
        return "" if value is None else str(value)
    if spec.kind == "yaml" and not isinstance(value, str):
        return "" if value is None else yaml.safe_dump(value, default_flow_style=True).strip()
    if spec.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def widget_values(config: dict[str, Any]) -> dict[str, Any]:
    specs = field_specs()
    return {path: widget_value(specs[path], v) for path, v in flat_values(config).items()}


@functools.cache
def default_widget_values() -> dict[str, Any]:
    """What a fresh form holds: the address leaves these out, so that it stays short."""
    return widget_values(ExperimentConfig().to_dict())


# Text longer than this in an address is not a value anyone typed into the form.
ADDRESS_TEXT_MAX = 4096
# Integers past this cannot come from an address intact (browsers, JSON and protobuf differ).
_INT_LIMIT = 2**53


def address_text(spec: FieldSpec, value: Any) -> str | None:
    """A widget's value as its query parameter holds it; None when it is the default (an
    empty list field is one: the configuration leaves it out, and the default applies)."""
    if value == default_widget_values().get(spec.path):
        return None
    if value == "" and spec.kind == "int_list":
        return None
    if value is None:
        return ""
    if spec.kind == "bool":
        return "1" if value else "0"
    return str(value)


def _clamped(spec: FieldSpec, value: float) -> float:
    """Into the field's range; past an open end (a learning rate of 0) there is no nearest
    value, so it is refused."""
    if spec.minimum is not None and value <= spec.minimum:
        if spec.exclusive_min:
            raise ValueError(value)
        value = spec.minimum
    if spec.maximum is not None and value >= spec.maximum:
        if spec.exclusive_max:
            raise ValueError(value)
        value = spec.maximum
    return value


def address_value(spec: FieldSpec, text: str) -> Any:
    """A query parameter's text as the field's widget value: ValueError for text that is not
    one, so that a hand-edited or hostile address is ignored field by field; numbers beyond the
    field's range are brought to its nearest end."""
    if len(text) > ADDRESS_TEXT_MAX:
        raise ValueError("too long")
    if spec.kind == "choice":
        for choice in spec.choices:
            if choice is not None and str(choice) == text:
                return choice
        raise ValueError(text)
    if spec.kind == "bool":
        if text not in ("0", "1"):
            raise ValueError(text)
        return text == "1"
    if spec.kind in ("int", "float"):
        if not text.strip():
            if spec.optional:
                return None
            raise ValueError("empty")
        if spec.kind == "int":
            number: float = int(text)
            if abs(number) > _INT_LIMIT:
                number = math.copysign(_INT_LIMIT, number)
        else:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(text)
        number = _clamped(spec, number)
        return int(number) if spec.kind == "int" else float(number)
    return text


def _number(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def _test_size(dataset: Any, samples: Any) -> str:
    """What data.test_size left empty holds out (training/zoo/data.py's loaders)."""
    if dataset == "mnist5k":
        return "1000 (the default)"
    if dataset == "synthetic" and _number(samples, 10, 1_000_000):
        return f"{int(samples) // 5} (a fifth)"
    if dataset in ("digits", "synthetic", "npz"):
        return "a fifth of the examples"
    return "unused: its own test split"


def _name(value: Any, names: Any, default: str) -> str:
    return value if isinstance(value, str) and value in names else default


def blank_defaults(data: dict[str, Any]) -> dict[str, str]:
    """What each field left empty stands for, by path, with the form's other choices as they
    are (`data`, the form's configuration, valid or not): the inner optimizer and the momentum
    depend on the algorithm, alpha on beta and the workers. A form shows it in the empty field,
    which otherwise reads as nothing; short, as a field is narrow (its help says more)."""
    from training.exchanges.base import DEFAULT_BETA, moving_rate
    from training.schema import MODELS, InnerOptimizer, OptimizerConfig
    from training.schema.algorithms import REGISTRY
    from training.schema.zoo import DEFAULT_MODEL

    def section(name: str) -> dict[str, Any]:
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    defaults = default_widget_values()
    opt, resources, dataset = section("optimizer"), section("resources"), section("data")
    algorithm = _name(opt.get("algorithm"), REGISTRY, defaults["optimizer.algorithm"])
    inner = opt.get("inner") if isinstance(opt.get("inner"), str) else None
    rules = OptimizerConfig(
        algorithm=algorithm, inner=_name(inner, {i.value for i in InnerOptimizer}, None)
    )
    inner = rules.resolved_inner.value
    workers = _number(resources.get("workers", defaults["resources.workers"]), 1, 1024)
    beta = _number(opt.get("beta"), -1, 1) or None
    model = MODELS[_name(section("model").get("name"), MODELS, DEFAULT_MODEL)]
    builder = section("model").get("builder")
    # An optional field with a default of its own: empty, the form leaves it out, so the
    # default applies.
    out = {
        path: f"{spec.default} (the default)"
        for path, spec in field_specs().items()
        if spec.optional and spec.default is not None
    }
    out |= {
        "name": "none: the run is known by its id",
        "data.loader": "none: data.dataset gives the data",
        "data.path": "required" if dataset.get("dataset") == "npz" else "none: keras downloads it",
        "data.test_size": _test_size(
            dataset.get("dataset", defaults["data.dataset"]),
            dataset.get("synthetic_samples", defaults["data.synthetic_samples"]),
        ),
        "model.builder": "none: model.name gives the model",
        "model.loss": "required with a builder" if builder else model.loss,
        "model.metrics": f"[{'accuracy' if builder else model.accuracy}] (the default)",
        "optimizer.inner": f"{inner} ({algorithm}'s default)",
        "optimizer.momentum": f"{rules.resolved_momentum:g} "
        + (
            f"({algorithm}'s default)"
            if "momentum" in REGISTRY[algorithm].defaults
            else f"(with {inner})"
        ),
        "optimizer.beta": (
            "unused: alpha is set"
            if _number(opt.get("alpha"), -10_000, 10_000)
            else f"{DEFAULT_BETA:g} (the default)"
        ),
        "optimizer.alpha": (
            f"{moving_rate(beta, int(workers)):g} = beta / workers" if workers else "beta / workers"
        ),
        "optimizer.group_size": "one host's ranks",
        "optimizer.beta_root": f"{DEFAULT_BETA:g} (the default)",
        "training.max_steps": "none: the epochs decide",
        "resources.hosts": "the service's own hosts",
        "resources.min_workers": f"{int(workers)} (all of them)" if workers else "all of them",
        "resources.time_limit_minutes": "none: the Slurm partition's default",
    }
    return out
