"""The sweep file: W&B's keys (method, metric, parameters, run_cap, early_terminate) over the
dotted paths of the training schema, applied to a base configuration.

A sweep is refused before anything is recorded when any value a trial could receive is one the
training schema refuses: every parameter's values, or the ends and a middle point of its range,
are set into the base configuration, one parameter at a time, and validated as a job would be.
Every problem is one line naming the key, what is wrong, and what was received.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from db.text import check_printable
from service.sweeps.space import GRID_KINDS, Dimension, grid_count, grid_size
from training.run.metrics import (
    CENTER_ACCURACY,
    CENTER_LOSS,
    TRAIN_LOSS,
    WORKER_ACCURACY,
    WORKER_LOSS,
)
from training.schema import (
    SEED_MAX,
    ConfigError,
    ExperimentConfig,
    load_yaml_text,
    parse_config,
)

METHODS = ("grid", "random", "tpe")
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "uniform",
    "int_uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
)
# What a trial can be judged by: the metrics training records that say how good a model is.
OBJECTIVES = (CENTER_ACCURACY, CENTER_LOSS, WORKER_ACCURACY, WORKER_LOSS, TRAIN_LOSS)
MAX_RUN_CAP = 1000
MAX_CONCURRENCY = 64
MAX_PARAMETERS = 50
MAX_CHOICES = 1000
MAX_ITER = 10**6
MAX_BRACKETS = 100
MAX_NAME = 200  # of a run, and so of a trial's job
MAX_STEPS = 10**9  # of a q_uniform range
# exp() of more overflows a float: log_uniform's bounds are natural logarithms.
MAX_LOG = 700.0
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
_PATH = re.compile(PATH_PATTERN)
# W&B's keys that name what to run: here every trial runs the training program.
_NOT_USED = ("program", "command", "entity", "project")


class SweepError(ConfigError):
    """A sweep file or request was refused; one line per problem."""

    def cli_message(self) -> str:
        return f"invalid sweep: {self}"


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = f"a nested {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"a number, not true or false (received: {str(value).lower()})")
    return value


def _number(value: Any) -> int | float:
    _no_bool(value)
    if not isinstance(value, int | float):
        raise ValueError(f"a number (received: {_shown(value)})")
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError(f"a finite number (received: {_shown(value)})")
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > 1000:
            raise ValueError(f"text of at most 1000 characters (received: {_shown(value)})")
        return check_printable(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value)
    raise ValueError(
        f"a number, text, true, false or null, or a list of them (received: {_shown(value)})"
    )


def _choice(value: Any) -> Any:
    """A value a parameter can take: a scalar, or a list of scalars (a list field's value)."""
    if isinstance(value, list):
        if len(value) > 1000:
            raise ValueError(f"a list of at most 1000 values (received {len(value)})")
        return [_scalar(v) for v in value]
    return _scalar(value)


def _choices(value: Any) -> Any:
    if not isinstance(value, list):
        raise ValueError(f"a list of the values to try (received: {_shown(value)})")
    if not 1 <= len(value) <= MAX_CHOICES:
        raise ValueError(f"1 to {MAX_CHOICES} values (received {len(value)})")
    return [_choice(v) for v in value]


def _path(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 250 or not _PATH.match(value):
        raise ValueError(
            "a dotted path of the configuration, such as optimizer.learning_rate "
            f"(received: {_shown(value)})"
        )
    return value


def _base(value: Any) -> Any:
    if value is None or isinstance(value, dict | str):
        return value
    raise ValueError(
        "the base configuration's file name, or the configuration itself as a mapping of "
        f"sections (received: {_shown(value)})"
    )


Number = Annotated[Any, BeforeValidator(_number)]
Choice = Annotated[Any, BeforeValidator(_choice)]
Count = Annotated[int, BeforeValidator(_no_bool)]
ParamPath = Annotated[str, BeforeValidator(_path)]
Text = Annotated[str, BeforeValidator(lambda v: check_printable(v) if isinstance(v, str) else v)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(_Strict):
    name: Literal[OBJECTIVES]  # type: ignore[valid-type]
    goal: Literal["maximize", "minimize"] = "minimize"  # W&B's default


class Parameter(_Strict):
    """One search dimension, as W&B writes it: `value`, `values`, or `min`/`max` with a
    `distribution` (int_uniform when both bounds are integers, else uniform)."""

    value: Choice = None
    values: Annotated[list[Any] | None, BeforeValidator(_choices)] = None
    distribution: Literal[DISTRIBUTIONS] | None = None  # type: ignore[valid-type]
    min: Number | None = None
    max: Number | None = None
    q: Number | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        given = self.model_fields_set
        kinds = [k for k in ("value", "values") if k in given]
        if {"min", "max"} & given:
            kinds.append("min and max")
        if len(kinds) > 1:
            raise ValueError(
                f"give one of value, values, or min and max (received: {' and '.join(kinds)})"
            )
        dist = self.distribution
        if "value" in given:
            self._expect(dist, "constant", "value")
            self.distribution = "constant"
        elif "values" in given:
            self._expect(dist, "categorical", "values")
            self.distribution = "categorical"
        else:
            self._range(dist)
        if self.q is not None and self.distribution != "q_uniform":
            raise ValueError(f"q: only with distribution q_uniform (received: {_shown(self.q)})")
        return self

    @staticmethod
    def _expect(dist: str | None, kind: str, key: str) -> None:
        if dist not in (None, kind):
            raise ValueError(
                f"distribution {dist} takes min and max, not {key}; drop the distribution or "
                f"give min and max (received: {key})"
            )

    def _range(self, dist: str | None) -> None:
        if self.min is None or self.max is None:
            missing = " and ".join(k for k in ("min", "max") if getattr(self, k) is None)
            raise ValueError(
                f"{missing}: required"
                + (f" by distribution {dist}" if dist else "; or give value or values")
            )
        if dist in ("constant", "categorical"):
            raise ValueError(f"distribution {dist} takes value(s), not min and max")
        both_int = isinstance(self.min, int) and isinstance(self.max, int)
        self.distribution = dist = dist or ("int_uniform" if both_int else "uniform")
        if not self.min < self.max:
            raise ValueError(
                f"min must be less than max (received: min {_shown(self.min)}, "
                f"max {_shown(self.max)})"
            )
        if dist == "int_uniform" and not both_int:
            raise ValueError(
                f"int_uniform takes integer bounds (received: min {_shown(self.min)}, "
                f"max {_shown(self.max)})"
            )
        if dist == "log_uniform_values" and self.min <= 0:
            raise ValueError(
                f"log_uniform_values takes positive bounds (received: min {_shown(self.min)})"
            )
        if dist == "log_uniform" and max(abs(self.min), abs(self.max)) > MAX_LOG:
            raise ValueError(
                f"log_uniform takes natural logarithms as bounds, from -{MAX_LOG:g} to "
                f"{MAX_LOG:g}; for the values themselves use log_uniform_values (received: "
                f"min {_shown(self.min)}, max {_shown(self.max)})"
            )
        if dist == "q_uniform":
            q = 1 if self.q is None else self.q
            if q <= 0:
                raise ValueError(f"q: a positive step (received: {_shown(q)})")
            steps = (self.max - self.min) / q
            if not math.isfinite(steps) or steps > MAX_STEPS:
                raise ValueError(
                    f"q: {_shown(q)} cuts the range into more than {MAX_STEPS:,} steps; use "
                    f"uniform, or a larger q (received: min {_shown(self.min)}, "
                    f"max {_shown(self.max)})"
                )
            if math.floor(self.max / q) < math.ceil(self.min / q):
                raise ValueError(
                    f"q_uniform: no multiple of q {_shown(q)} lies between min and max "
                    f"(received: min {_shown(self.min)}, max {_shown(self.max)})"
                )
            self.q = q


class EarlyTerminate(_Strict):
    """W&B's hyperband keys (min_iter, or max_iter and s; eta), and a median rule. An
    iteration is one recorded value of the sweep's metric: one evaluation for center_accuracy."""

    type: Literal["hyperband", "median"]
    min_iter: Annotated[Count, Field(ge=1, le=MAX_ITER)] | None = None
    max_iter: Annotated[Count, Field(ge=1, le=MAX_ITER)] | None = None
    s: Annotated[Count, Field(ge=1, le=100)] | None = None
    eta: Annotated[float, BeforeValidator(_number), Field(gt=1, le=100)] = 3.0
    min_trials: Annotated[Count, Field(ge=1, le=MAX_RUN_CAP)] | None = None

    @model_validator(mode="after")
    def _keys_of_the_type(self) -> EarlyTerminate:
        given = self.model_fields_set
        if self.type == "hyperband":
            if "min_trials" in given:
                raise ValueError("min_trials: a key of type median, not hyperband")
            if "min_iter" in given and ({"max_iter", "s"} & given):
                raise ValueError("give min_iter, or max_iter and s, not both")
            if "min_iter" not in given and not {"max_iter", "s"} <= given:
                raise ValueError("hyperband needs min_iter, or max_iter and s (received neither)")
        else:
            for key in ("max_iter", "s"):
                if key in given:
                    raise ValueError(f"{key}: a key of type hyperband, not median")
            if "eta" in given:
                raise ValueError("eta: a key of type hyperband, not median")
            self.min_iter = self.min_iter or 1
            self.min_trials = self.min_trials or 3
        return self

    def brackets(self) -> list[int]:
        """Hyperband's iterations at which trials are compared, as W&B computes them."""
        if self.type != "hyperband":
            return []
        if self.min_iter is not None:
            out, band = [], float(self.min_iter)
            for _ in range(MAX_BRACKETS):  # W&B's 100; an eta near 1 must not loop for long
                if band > MAX_ITER:
                    break
                out.append(int(band))
                band *= self.eta
            return sorted(set(out))
        out, band = [], float(self.max_iter)
        for _ in range(self.s):
            band /= self.eta
            if band < 1:
                break
            out.append(int(band))
        return sorted(set(out))


class SweepSpec(_Strict):
    name: Annotated[Text, Field(max_length=MAX_NAME)] | None = None
    description: Annotated[Text, Field(max_length=5000)] | None = None
    method: Literal[METHODS]  # type: ignore[valid-type]
    metric: Metric
    parameters: Annotated[
        dict[ParamPath, Parameter], Field(min_length=1, max_length=MAX_PARAMETERS)
    ]
    run_cap: Annotated[Count, Field(ge=1, le=MAX_RUN_CAP)] | None = None
    concurrency: Annotated[Count, Field(ge=1, le=MAX_CONCURRENCY)] = 1
    early_terminate: EarlyTerminate | None = None
    seed: Annotated[Count, Field(ge=0, le=SEED_MAX)] | None = None
    base: Annotated[Any, BeforeValidator(_base)] = None


@dataclass
class ValidSweep:
    spec: SweepSpec
    data: dict[str, Any]
    base: dict[str, Any]
    dimensions: list[Dimension]
    run_cap: int
    seed: int
    warnings: list[str]

    def stored_spec(self) -> dict[str, Any]:
        """The file as recorded: as written, less its base (kept apart), with the run cap and
        seed it runs with, so that parsing it again gives the same sweep."""
        kept = {k: v for k, v in self.data.items() if k != "base"}
        return {**kept, "run_cap": self.run_cap, "seed": self.seed}


def dimensions(spec: SweepSpec) -> list[Dimension]:
    out = []
    for path in sorted(spec.parameters):
        p = spec.parameters[path]
        if p.distribution == "constant":
            out.append(Dimension(path, "constant", choices=(p.value,)))
        elif p.distribution == "categorical":
            out.append(Dimension(path, "categorical", choices=tuple(p.values)))
        else:
            out.append(Dimension(path, p.distribution, p.min, p.max, p.q))
    return out


def with_values(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The base configuration with each dotted path set; a path through a value that is not a
    section is a SweepError."""
    data = json.loads(json.dumps(base))
    for path, value in values.items():
        node = data
        parts = path.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise SweepError([f"{where} is not a section of the configuration"])
            node = child
        node[parts[-1]] = value
    return data


def parse_sweep_data(data: Any) -> SweepSpec:
    if not isinstance(data, dict):
        raise SweepError([f"sweep: expected a mapping of keys (received: {_shown(data)})"])
    if data.get("method") == "bayes":
        raise SweepError(
            [
                "method: bayes (W&B's Gaussian process search) is not offered; use tpe, Optuna's "
                "Bayesian search, with the same keys (received: bayes)"
            ]
        )
    parameters = data.get("parameters")
    for path, p in parameters.items() if isinstance(parameters, dict) else ():
        if isinstance(p, dict) and "parameters" in p:
            inner = (
                next(iter(p["parameters"]), "KEY") if isinstance(p["parameters"], dict) else "KEY"
            )
            raise SweepError(
                [
                    f"parameters.{_shown(path)[1:-1]}: W&B's nested parameters are written here "
                    f"as dotted paths, such as {_shown(path)[1:-1]}.{_shown(inner)[1:-1]}: "
                    "{values: [...]} (received: parameters under it)"
                ]
            )
    for key in _NOT_USED:
        if key in data:
            raise SweepError(
                [
                    f"{key}: W&B's key is not used here: every trial runs the training program "
                    "on the base configuration with its parameters; remove it"
                ]
            )
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SweepError(_lines(exc)) from None


def _lines(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) if len(str(p)) <= 60 else _shown(str(p)) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if e["type"] == "extra_forbidden":
            msg = "unknown key; see docs/sweeps.md for the keys"
        elif e["type"] == "missing":
            msg = "required"
        if "(received" not in msg and e["type"] != "missing":
            msg += f" (received: {_shown(e.get('input'))})"
        line = f"{loc}: {msg}" if loc else msg
        if line not in out:
            out.append(line)
    return out


def validate_sweep(
    data: Any,
    base: dict[str, Any] | str | None = None,
    data_dirs: list[Path] | None = None,
    placement: Callable[[ExperimentConfig], str | None] | None = None,
    slots: int | None = None,
) -> ValidSweep:
    """The sweep, checked whole: its keys, its base configuration (`base`, else the file's own
    `base:` mapping), and every value a trial can receive, by the training schema and by
    `placement` (the service's own rule: why it could never place a job, or None)."""
    spec = parse_sweep_data(data)
    if base is None:
        if isinstance(spec.base, str):
            raise SweepError(
                [
                    f"base: {_shown(spec.base)} names a file, which only the command line reads "
                    "(easgd sweep create FILE); send the base configuration itself"
                ]
            )
        base = spec.base or {}
    if isinstance(base, str):
        base = load_yaml_text(base, "base")
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise SweepError([f"base: expected a mapping of sections (received: {_shown(base)})"])
    base_cfg = _checked(base, data_dirs, placement, "base")
    # Kept complete, every default filled in: a later change of a default changes no trial.
    base = base_cfg.to_dict()
    dims = dimensions(spec)
    problems = []
    for dim in dims:
        for probe in dim.probes():
            try:
                cfg = _checked(with_values(base, {dim.path: probe}), data_dirs, placement, "")
            except SweepError as exc:
                problems.append(
                    f"parameters.{dim.path}: the value {_shown(probe)} is refused: {exc}"
                )
                break
            if dim.path.startswith("resources."):
                base_cfg = max(base_cfg, cfg, key=lambda c: c.resources.workers)
    if problems:
        raise SweepError(problems)
    run_cap = _run_cap(spec, dims)
    longest = trial_name(spec.name, 0, run_cap - 1)
    if spec.name is not None and len(longest) > MAX_NAME:
        room = MAX_NAME - (len(longest) - len(spec.name))
        raise SweepError(
            [
                f"name: its trials' jobs are named <name>-trial-<n>, at most {MAX_NAME} "
                f"characters; give a name of at most {room} characters for {run_cap} trials "
                f"(received {len(spec.name)} characters: {_shown(spec.name)})"
            ]
        )
    seed = spec.seed if spec.seed is not None else secrets.randbelow(SEED_MAX + 1)
    warnings = _warnings(spec, dims, base_cfg, slots)
    return ValidSweep(spec, data, base, dims, run_cap, seed, warnings)


def _checked(
    data: dict[str, Any],
    data_dirs: list[Path] | None,
    placement: Callable[[ExperimentConfig], str | None] | None,
    where: str,
) -> ExperimentConfig:
    prefix = f"{where}: " if where else ""
    try:
        cfg = parse_config(data, data_dirs)
    except ConfigError as exc:
        raise SweepError([prefix + p for p in exc.problems]) from None
    problem = placement(cfg) if placement else None
    if problem:
        raise SweepError([prefix + problem])
    return cfg


def _run_cap(spec: SweepSpec, dims: list[Dimension]) -> int:
    if spec.method == "grid":
        for d in dims:
            if d.kind not in GRID_KINDS:
                raise SweepError(
                    [
                        f"parameters.{d.path}: grid tries listed values, or every value of an "
                        "int_uniform or q_uniform range; give values, or use method random or "
                        f"tpe (received: distribution {d.kind})"
                    ]
                )
            if grid_count(d) > MAX_CHOICES:
                raise SweepError(
                    [
                        f"parameters.{d.path}: the grid would try {grid_count(d):,} values of "
                        f"it, more than {MAX_CHOICES}; narrow the range, raise q, or use method "
                        f"random (received: {d.kind} from {_shown(d.low)} to {_shown(d.high)})"
                    ]
                )
        size = grid_size(dims)
        if spec.run_cap is None and size > MAX_RUN_CAP:
            raise SweepError(
                [
                    f"run_cap: the grid has {size:,} points, more than {MAX_RUN_CAP}; give "
                    "fewer values or a run_cap (the first run_cap points are tried)"
                ]
            )
        return min(spec.run_cap or size, size)
    if spec.run_cap is None:
        raise SweepError(
            [f"run_cap: required for method {spec.method} (a number of trials, 1 to {MAX_RUN_CAP})"]
        )
    return spec.run_cap


def _warnings(
    spec: SweepSpec, dims: list[Dimension], cfg: ExperimentConfig, slots: int | None
) -> list[str]:
    out = []
    for d in dims:
        if d.kind == "log_uniform":
            out.append(
                f"parameters.{d.path}: log_uniform takes natural logarithms (as W&B does): this "
                f"samples {math.exp(d.low):.4g} to {math.exp(d.high):.4g}; for those values "
                "themselves, use log_uniform_values"
            )
    need = spec.concurrency * cfg.resources.workers
    if slots is not None and need > slots:
        out.append(
            f"concurrency: {spec.concurrency} trials of {cfg.resources.workers} workers need "
            f"{need} slots; the service has {slots}, so fewer trials run at once"
        )
    return out


def trial_name(sweep_name: str | None, sweep_id: int, number: int) -> str:
    return f"{sweep_name or f'sweep-{sweep_id}'}-trial-{number}"
