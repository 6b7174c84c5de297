"""A refused configuration: one line per wrong field, naming its path, the reason and what was
received."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from db.errors import EasgdError
from training.schema.experiment import ExperimentConfig
from training.schema.fields import MAX_DEPTH, MAX_VALUES, loc_part, short


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


def describe(error: dict[str, Any]) -> str:
    loc = ".".join(loc_part(p) for p in error.get("loc", ()) if p != "__root__")
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
        return f"{loc}: unknown field{allowed} (received: {short(received)})"
    return f"{loc}: {msg[0].lower() + msg[1:]} (received: {short(received)})"


def _collect_fields(model: type[BaseModel], prefix: str, out: dict[str, set[str]]) -> None:
    out[prefix] = set(model.model_fields)
    for name, field in model.model_fields.items():
        ann = field.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):  # a section or null
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _collect_fields(ann, f"{prefix}.{name}" if prefix else name, out)


_FIELDS_BY_PATH: dict[str, set[str]] = {}
_collect_fields(ExperimentConfig, "", _FIELDS_BY_PATH)


def field_of(path: list[Any]) -> str:
    """The schema field a path into the input falls in, for naming it in a message."""
    prefix = ""
    for part in path:
        fields = _FIELDS_BY_PATH.get(prefix)
        if fields is None:
            break
        name = loc_part(part)
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
                    f"{field_of(path)}: holds more than {MAX_VALUES:,} values; a configuration "
                    "needs about 50"
                ]
            )
        if isinstance(value, dict | list | tuple):
            if len(path) >= MAX_DEPTH:
                raise ConfigError(
                    [
                        f"{field_of(path)}: nested deeper than {MAX_DEPTH} levels; a "
                        "configuration needs at most 4"
                    ]
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, [*path, k]) for k, v in items)
