"""The Launch form, generated from the training configuration schema (never written twice).

`field_specs()` is pure: it reads the pydantic models and returns what each widget needs:
kind, choices, default, range and one-line help.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import annotated_types
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
