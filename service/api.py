"""The REST API (FastAPI). Validation is the training schema's; nothing from a request reaches a
shell; with a token configured, every request must carry it."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from db.entities import JobStatus
from db.query import FilterError
from db.store import NotFound, Store, StoreError
from service import formatting
from service.processes import tail
from service.settings import ServiceSettings
from service.submission import prepare
from service.supervisor import Supervisor
from training.config import ConfigError


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | str = Field(
        default_factory=dict, description="The experiment, as a JSON object or YAML text."
    )
    set: list[str] = Field(default_factory=list, description="Overrides, key.path=value.")
    workers: int | None = Field(None, ge=1, le=1024, description="Overrides resources.workers.")
    name: str | None = Field(None, max_length=200)
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")
    source: Literal["api", "cli", "ui", "bench"] = "api"


class JobOut(BaseModel):
    id: int
    name: str | None
    status: str
    priority: int
    source: str
    workers: int
    hosts: str | None
    gpus: str | None
    run_id: str | None
    run_dir: str | None
    log_path: str | None
    pid: int | None
    exit_code: int | None
    message: str | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    ended_at: float | None
    config: dict[str, Any]
    warnings: list[str] = []


def _job_out(job, warnings: list[str] | None = None) -> JobOut:
    import json

    d = job.to_dict()
    d["config"] = json.loads(d["config"])
    return JobOut(**d, warnings=warnings or [])


def create_app(
    settings: ServiceSettings | None = None,
    store: Store | None = None,
    start_supervisor: bool = True,
) -> FastAPI:
    settings = settings or ServiceSettings.from_env()
    settings.check()
    store = store or Store(settings.db_url)
    supervisor = Supervisor(store, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.init()
        for note in supervisor.reconcile():
            print(f"easgd service: {note}", flush=True)
        if start_supervisor:
            supervisor.start()
        yield
        supervisor.stop()

    app = FastAPI(
        title="easgd job service",
        version="0.1.0",
        lifespan=lifespan,
        description="Queue, launch and supervise Horovod training jobs; query runs.",
    )

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        # Every path, the OpenAPI document and /health included.
        if settings.token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
                return JSONResponse(
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                    content={"detail": "missing or wrong token: send Authorization: Bearer TOKEN"},
                )
        return await call_next(request)

    app.state.store, app.state.supervisor, app.state.settings = store, supervisor, settings

    @app.exception_handler(NotFound)
    async def _not_found(_, exc: NotFound):
        return JSONResponse(status_code=404, content={"detail": str(exc.args[0])})

    @app.exception_handler(StoreError)
    async def _bad(_, exc: StoreError):
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(FilterError)
    async def _bad_filter(_, exc: FilterError):
        return JSONResponse(
            status_code=422, content={"detail": exc.short, "position": exc.position}
        )

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "store": store.display_url,
            "slots": settings.slots,
            "hosts": settings.hosts,
            "gpus": settings.gpus,
            "running": len(supervisor.handles),
        }

    @app.post("/jobs", status_code=201, response_model=JobOut)
    def submit(req: JobRequest) -> JobOut:
        try:
            prepared = prepare(req.config, req.set, req.workers, settings.data_dirs, req.name)
        except ConfigError as exc:
            detail = [{"field": p.split(":", 1)[0], "msg": p} for p in exc.problems]
            raise HTTPException(422, detail) from None
        cfg = prepared.config
        job = store.create_job(
            config=prepared.frozen,
            workers=cfg.resources.workers,
            hosts=cfg.resources.hosts,
            name=req.name or cfg.name,
            priority=req.priority,
            source=req.source,
        )
        supervisor.wake()
        return _job_out(job, prepared.warnings)

    @app.get("/jobs", response_model=list[JobOut])
    def jobs(
        status: list[JobStatus] | None = Query(None), limit: int = Query(100, ge=1, le=1000)
    ) -> list[JobOut]:
        return [
            _job_out(j)
            for j in store.list_jobs(status=[s.value for s in status or []], limit=limit)
        ]

    @app.get("/jobs/{job_id}", response_model=JobOut)
    def job(job_id: int) -> JobOut:
        return _job_out(store.get_job(job_id))

    @app.post("/jobs/{job_id}/cancel", response_model=JobOut)
    def cancel(job_id: int) -> JobOut:
        return _job_out(supervisor.cancel(job_id))

    @app.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
    async def logs(
        job_id: int,
        tail_lines: int = Query(200, alias="tail", ge=1, le=100000),
        follow: bool = False,
    ):
        j = store.get_job(job_id)
        if not follow:
            return PlainTextResponse(tail(j.log_path, tail_lines) + "\n" if j.log_path else "")
        return StreamingResponse(_follow(store, job_id, tail_lines), media_type="text/plain")

    @app.get("/runs")
    def runs(
        filter: str | None = None,
        order_by: list[str] | None = Query(None),
        limit: int = Query(100, ge=1, le=10000),
    ) -> list[dict[str, Any]]:
        return [formatting.run_json(r) for r in store.search_runs(filter, order_by, limit)]

    @app.get("/runs/{run_id}")
    def run(run_id: str) -> dict[str, Any]:
        r = formatting.run_json(store.get_run(run_id))
        r["events"] = [e.__dict__ for e in store.events(run_id)]
        return r

    @app.get("/runs/{run_id}/metrics")
    def run_metrics(
        run_id: str, key: list[str] = Query(...), max_points: int = Query(1000, ge=2, le=100000)
    ) -> dict[str, Any]:
        store.get_run(run_id)
        hist = store.metric_histories([run_id], key, max_points)
        return {k: [[p.step, p.wall_time, p.value] for p in hist[(run_id, k)]] for k in key}

    return app


async def _follow(store: Store, job_id: int, tail_lines: int) -> AsyncIterator[bytes]:
    job = store.get_job(job_id)
    while not job.log_path:
        if job.status.is_terminal():
            return
        await asyncio.sleep(0.5)
        job = store.get_job(job_id)
    path = Path(job.log_path)
    text = tail(path, tail_lines)
    if text:
        yield (text + "\n").encode()
    with path.open("rb") as f:
        f.seek(0, 2)
        while True:
            chunk = f.read()
            if chunk:
                yield chunk
                continue
            if store.get_job(job_id).status.is_terminal():
                rest = f.read()
                if rest:
                    yield rest
                return
            await asyncio.sleep(0.5)
