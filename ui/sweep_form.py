"""'Sweep these fields' on the Launch form: the form's configuration becomes a sweep's base and
some of its fields are searched. The service checks the sweep as it checks `easgd sweep create`:
every value a trial could receive, by the same schema."""

from __future__ import annotations

from enum import Enum
from typing import Any

import streamlit as st

from service.client import ApiError
from service.sweeps.spec import OBJECTIVES
from training.schema import ExperimentConfig, flatten
from ui import state
from ui.form import FieldSpec
from ui.navigation import PATHS

SWEEPABLE = ("int", "float", "choice", "bool")
# The example's rule: half the trials kept at evaluations 3, 6, 12...
HYPERBAND = {"type": "hyperband", "min_iter": 3, "eta": 2}


def _plain(v: Any) -> Any:
    return v.value if isinstance(v, Enum) else v


def _range(spec: FieldSpec, value: Any) -> tuple[float, float]:
    """A first range around the form's value, inside the schema's."""
    if spec.kind == "int":
        v = int(value) if isinstance(value, int) else 1
        lo, hi = max(v // 2, 1), max(v * 2, 2)
    else:
        v = float(value) if isinstance(value, int | float) and value else 0.1
        lo, hi = (v / 10, v * 10) if v > 0 else (v - 1, v + 1)
    if spec.minimum is not None:
        lo = max(lo, spec.minimum)
    if spec.maximum is not None:
        hi = min(hi, spec.maximum)
    return lo, hi


def _parameter(spec: FieldSpec, value: Any) -> dict[str, Any]:
    """The widgets of one searched field, and its entry in the sweep's `parameters`."""
    key = f"sweep.{spec.path}"
    cols = st.columns([3, 2, 2, 2])
    cols[0].markdown(f"**{spec.label}** `{spec.path}`")
    if spec.kind in ("choice", "bool"):
        choices = (
            [True, False] if spec.kind == "bool" else [c for c in spec.choices if c is not None]
        )
        picked = cols[1].multiselect(
            "values",
            choices,
            default=[c for c in choices if _plain(c) == _plain(value)] or choices[:2],
            key=f"{key}.values",
            format_func=lambda c: str(_plain(c)),
        )
        return {"values": [_plain(c) for c in picked]}
    lo, hi = _range(spec, value)
    if spec.kind == "int":
        low = cols[1].number_input("min", value=int(lo), step=1, key=f"{key}.min")
        high = cols[2].number_input("max", value=int(hi), step=1, key=f"{key}.max")
        return {"min": int(low), "max": int(high)}
    low = cols[1].number_input("min", value=float(lo), format="%g", key=f"{key}.min")
    high = cols[2].number_input("max", value=float(hi), format="%g", key=f"{key}.max")
    log = cols[3].checkbox("log scale", value=lo > 0 and hi / lo >= 10, key=f"{key}.log")
    kind = "log_uniform_values" if log else "uniform"
    return {"distribution": kind, "min": float(low), "max": float(high)}


def sweep_these_fields(
    config: ExperimentConfig, specs: dict[str, FieldSpec], shown: set[str]
) -> None:
    with st.expander("Sweep these fields"):
        st.caption(
            "This configuration is the base; each trial takes it with the searched fields drawn "
            "as below, and runs as a job (`easgd sweep create` takes the same as a file)."
        )
        current = flatten(config.to_dict())
        options = [p for p, s in specs.items() if p in shown and s.kind in SWEEPABLE]
        paths = st.multiselect(
            "Fields to search",
            options,
            key="sweep.fields",
            format_func=lambda p: f"{specs[p].label} ({p})",
        )
        parameters = {p: _parameter(specs[p], current.get(p)) for p in paths}
        cols = st.columns(5)
        method = cols[0].selectbox("method", ["random", "tpe", "grid"], key="sweep.method")
        metric = cols[1].selectbox("metric", OBJECTIVES, key="sweep.metric")
        run_cap = cols[2].number_input("trials", 1, 1000, 8, key="sweep.run_cap")
        concurrency = cols[3].number_input("at once", 1, 64, 1, key="sweep.concurrency")
        stop_early = cols[4].checkbox("stop poor trials early", value=True, key="sweep.early")
        if st.button("Start sweep", disabled=not paths):
            spec = {
                "name": config.name,
                "method": method,
                "metric": {"name": metric, "goal": _goal(metric)},
                "parameters": parameters,
                "run_cap": int(run_cap),
                "concurrency": int(concurrency),
                **({"early_terminate": HYPERBAND} if stop_early else {}),
            }
            _start(spec, config)


def _goal(metric: str) -> str:
    return "maximize" if metric.endswith("accuracy") else "minimize"


def _start(spec: dict[str, Any], config: ExperimentConfig) -> None:
    try:
        sweep = state.client().create_sweep(spec, config.to_dict(), source="ui")
    except ApiError as exc:
        problems = exc.detail if isinstance(exc.detail, list) else [str(exc)]
        for p in problems:
            st.error(p.get("msg", str(p)) if isinstance(p, dict) else str(p))
        return
    for w in sweep.get("warnings", []):
        st.warning(w)
    st.success(f"Sweep {sweep['id']} started: {sweep['run_cap']} trials.")
    st.page_link(
        PATHS["sweeps"],
        label=f"Follow sweep {sweep['id']} on the Sweeps page",
        icon=":material/arrow_forward:",
        query_params={"sweep": str(sweep["id"])},
    )
