"""Reading a configuration: YAML text with limits, `--set` overrides, and validation."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from training.schema.experiment import ExperimentConfig
from training.schema.fields import MAX_DEPTH, MAX_TEXT_BYTES, MAX_VALUES, loc_part, short
from training.schema.problems import ConfigError, check_shape, describe


def parse_config(data: Any, data_dirs: list[Path] | None = None) -> ExperimentConfig:
    """Validate a configuration mapping; raises ConfigError naming every wrong field.

    With `data_dirs` (the service), `data.path` must lie under one of them and is returned
    resolved; without (a shell), it only has to exist.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"configuration: expected a mapping of sections (received: {short(data)})"]
        )
    check_shape(data)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([describe(e) for e in exc.errors()]) from None
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
                f"file in one of them (received: {short(text)})"
            ]
        )
    if path is None or not path.is_file():
        raise ConfigError(
            [f"data.path: no such file; give an existing .npz file (received: {short(text)})"]
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
        raise ConfigError([f"{p}: expected a mapping of sections (received: {short(data)})"])
    return data or {}


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value`: the value is read as YAML so numbers, booleans, lists and null work."""
    if "=" not in text:
        raise ConfigError([f"--set: expected key.path=value (received: {short(text)})"])
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError([f"--set: empty part in key path (received: {short(key)})"])
    where = f"--set {loc_part(key.strip())}"
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
                        f"--set {loc_part('.'.join(path))}: {loc_part(part)} is not a section "
                        f"(received: {short(text)})"
                    ]
                )
            node = child
        node[path[-1]] = value
    return result


def resolve(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    data = load_config_file(path) if path else {}
    return parse_config(apply_overrides(data, overrides or []))
