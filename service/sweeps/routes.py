"""The REST API's sweeps: POST /sweeps, GET /sweeps, GET /sweeps/{id}, POST /sweeps/{id}/stop.

The same conventions as the jobs' routes (service.api): a refused sweep is a 422 in FastAPI's
shape, one entry per problem with the key it is about; an unknown id is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from db.entities import RunSource, SweepRecord, SweepStatus
from db.store import Store
from service.sweeps.driver import SweepDriver
from training.schema import ConfigError, load_yaml_text


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sweep: dict[str, Any] | str = Field(
        description="The sweep file (W&B's keys), as a JSON object or YAML text."
    )
    base: dict[str, Any] | str | None = Field(
        None,
        description="The base configuration, as a JSON object or YAML text (default: the "
        "sweep's own `base` mapping, else the schema's defaults).",
    )
    source: RunSource = RunSource.API


class TrialOut(BaseModel):
    number: int
    state: str
    params: dict[str, Any]
    job_id: int | None
    run_id: str | None
    value: float | None
    message: str | None
    created_at: float
    ended_at: float | None


class SweepOut(BaseModel):
    id: int
    name: str | None
    status: str
    method: str
    metric: str
    goal: str
    seed: int
    run_cap: int
    concurrency: int
    source: str
    stop_requested: bool
    message: str | None
    created_at: float
    ended_at: float | None
    spec: dict[str, Any]
    base_config: dict[str, Any]
    trials: list[TrialOut]
    best_trial: int | None = Field(
        description="The number of the succeeded trial with the best final metric."
    )
    warnings: list[str] = []


def sweep_out(sweep: SweepRecord, warnings: list[str] | None = None) -> SweepOut:
    d = sweep.to_dict()
    trials = [TrialOut(**{k: t[k] for k in TrialOut.model_fields}) for t in d.pop("trials")]
    return SweepOut(**d, trials=trials, warnings=warnings or [])


def _problem(problem: str, field: str) -> dict[str, Any]:
    part, _, rest = field.partition(".")
    where = "base" if part == "base" else "sweep"
    path = rest if part == "base" else field
    loc: tuple[str, ...] = ("body", where)
    if path and path != where and re.fullmatch(r"[A-Za-z0-9_.\-]+", path):
        loc = (*loc, *path.split("."))
    return {"loc": loc, "msg": problem, "type": "sweep", "field": field}


def add_routes(
    app: FastAPI,
    store: Store,
    driver: SweepDriver,
    message: Callable[[str], dict[str, Any]],
    body: dict[int, Any],
) -> None:
    no_sweep = {404: message("No sweep with this id.")}

    def sweep_id(sweep_id: int = PathParam(ge=1, description="The sweep's id.")) -> int:
        return sweep_id

    @app.post("/sweeps", status_code=201, response_model=SweepOut, responses=body)
    def create_sweep(req: SweepRequest) -> SweepOut:
        """Validate a sweep whole and start it: its trials run as jobs, `concurrency` at once."""
        try:
            data = load_yaml_text(req.sweep, "sweep") if isinstance(req.sweep, str) else req.sweep
            sweep, warnings = driver.create(data, req.base, req.source.value)
        except ConfigError as exc:
            raise RequestValidationError(
                [_problem(p, f) for p, (f, _) in zip(exc.problems, exc.by_field())]
            ) from None
        return sweep_out(sweep, warnings)

    @app.get("/sweeps", response_model=list[SweepOut])
    def sweeps(
        status: list[SweepStatus] | None = Query(None, max_length=len(SweepStatus)),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[SweepOut]:
        """Sweeps, newest first, with their trials."""
        found = store.list_sweeps(status=[s.value for s in status or []], limit=limit)
        return [sweep_out(s) for s in found]

    @app.get("/sweeps/{sweep_id}", response_model=SweepOut, responses=no_sweep)
    def sweep(sweep_id: int = Depends(sweep_id)) -> SweepOut:
        return sweep_out(store.get_sweep(sweep_id))

    @app.post("/sweeps/{sweep_id}/stop", response_model=SweepOut, responses=no_sweep)
    def stop_sweep(sweep_id: int = Depends(sweep_id)) -> SweepOut:
        """Stop a sweep: no new trial, its trials' jobs cancelled. A sweep that ended already is
        returned as it is."""
        return sweep_out(driver.stop_sweep(sweep_id))
