"""The REST API (FastAPI). Validation is the training schema's; nothing from a request reaches a
shell; with a token configured, every request must carry it.

Every reply matches the OpenAPI document: a 422 always has FastAPI's shape (a list of
`{loc, msg, type}`), whether FastAPI or the training schema or the filter parser found the
problem; every other 4xx is `{"detail": "one line"}`; OPTIONS and 405 list every method of the
path."""

from __future__ import annotations

import asyncio
import hmac
import math
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from db.entities import JobStatus, RunSource, RunView
from db.errors import EasgdError, InvalidTransition, StoreError
from db.query import MAX_ORDERINGS, FilterError, parse_order_by
from db.sql import KEY_PATTERN, RUN_ID_PATTERN
from db.store import Store
from db.text import NOT_PRINTABLE, check_printable
from service import code_routes, formatting, run_edit_routes
from service.logs import tail
from service.run_removal import finish_deletions
from service.settings import ServiceSettings
from service.submission import Prepared, prepare
from service.supervisor import Supervisor
from service.sweeps import routes as sweep_routes
from service.sweeps.driver import SweepDriver
from training.schema import ConfigError

MAX_BODY_BYTES = 1 << 20
# A request line must fit the HTTP server's 64 KiB, percent-encoded (up to 12 bytes a character).
MAX_FILTER_CHARS = 3000
MAX_ORDERING_CHARS = 100


class Message(BaseModel):
    """Every 4xx but 422: one line saying what is wrong and what to do."""

    detail: str


def _message(description: str) -> dict[str, Any]:
    return {"model": Message, "description": description}


def _json_message(description: str) -> dict[str, Any]:
    """For a route whose own replies are not JSON: its errors still are."""
    ref = {"$ref": "#/components/schemas/Message"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | str = Field(
        default_factory=dict, description="The experiment, as a JSON object or YAML text."
    )
    set: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list, max_length=100, description="Overrides, key.path=value."
    )
    workers: int | None = Field(None, ge=1, le=1024, description="Overrides resources.workers.")
    name: Annotated[str, Field(max_length=200, pattern=f"^[^{NOT_PRINTABLE}]*$")] | None = Field(
        None, description="Shown in tables: no control characters."
    )
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")
    source: RunSource = RunSource.API

    @field_validator("name", mode="before")
    @classmethod
    def _printable(cls, v: Any) -> Any:
        # The schema's own rule and message; the pattern above states it in the document.
        return check_printable(v) if isinstance(v, str) else v


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(ge=1, le=1024, description="The job's new number of workers.")

    @field_validator("workers", mode="before")
    @classmethod
    def _not_true_or_false(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"a number of workers, not {str(v).lower()}")
        return v


class JobCheck(BaseModel):
    """A job the service would accept: what it would warn about."""

    warnings: list[str] = []


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
    scheduler_job: str | None = Field(
        None, description='A batch scheduler\'s job of the current attempt ("slurm 17").'
    )
    scheduler_state: str | None = Field(
        None, description='What the scheduler last said of it ("PENDING (Resources)").'
    )
    warnings: list[str] = []


def _job_out(job, warnings: list[str] | None = None) -> JobOut:
    return JobOut(**job.to_dict(), warnings=warnings or [])


def _invalid(
    loc: tuple[str | int, ...], msg: str, kind: str, **extra: Any
) -> RequestValidationError:
    """A 422 in the shape FastAPI gives its own, so that clients parse one shape."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind, **extra}])


@contextmanager
def _about(*loc: str) -> Iterator[None]:
    """Name the request parameter a store or filter error is about."""
    try:
        yield
    except FilterError as exc:
        raise _invalid(loc, exc.short, "filter", position=exc.position) from None
    except StoreError as exc:
        raise _invalid(loc, str(exc), "value_error") from None


def _config_problem(problem: str, field: str) -> dict[str, Any]:
    if field in ("set", "--set", "workers"):
        loc: tuple[str, ...] = ("body", field.lstrip("-"))
    elif re.fullmatch(r"[A-Za-z0-9_.\-]+", field) and field != "config":
        loc = ("body", "config", *field.split("."))
    else:
        loc = ("body", "config")
    return {"loc": loc, "msg": problem, "type": "config", "field": field}


def _text(value: str, limit: int) -> str:
    """Lone surrogates are legal in JSON text but not in UTF-8: escape them."""
    return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def _echo(value: Any) -> Any:
    """What a 422 says it received, always renderable: JSON has no inf or NaN, and a
    structure is named by `loc` (echoing it could be a megabyte, nested a thousand deep)."""
    if isinstance(value, str):
        return _text(value, 200)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _job_id(job_id: int = PathParam(ge=1, description="The job's id.")) -> int:
    """One declaration of the path parameter; an id no row can have is the store's NotFound."""
    return job_id


def _allowed_methods(app: FastAPI, scope: dict[str, Any]) -> str:
    methods = {"OPTIONS"}
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _unreadable(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not UTF-8 ({cause.reason} at byte {cause.start}); send JSON"
    if isinstance(cause, RecursionError):
        return "the request body is JSON nested too deeply to read; a job is a few levels deep"
    return "the request body could not be read as JSON; send a JSON object"


def create_app(
    settings: ServiceSettings | None = None,
    store: Store | None = None,
    start_supervisor: bool = True,
) -> FastAPI:
    settings = settings or ServiceSettings.from_env()
    settings.check()
    store = store or Store(settings.db_url)
    supervisor = Supervisor(store, settings)
    sweeps = SweepDriver(
        store,
        settings,
        placement=lambda cfg: supervisor.placement_problem(
            cfg.resources.workers,
            cfg.resources.gpus_per_worker,
            cfg.resources.host_map,
            cfg.resources.time_limit_minutes,
        ),
        may_schedule=lambda: supervisor.lease.held,
        wake_scheduler=supervisor.wake,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.init()
        for note in supervisor.reconcile() + finish_deletions(store, settings.runs_dir):
            print(f"easgd service: {note}", flush=True)
        if start_supervisor:
            supervisor.start()
            sweeps.start()
        yield
        sweeps.stop()
        supervisor.stop()

    app = FastAPI(
        title="easgd job service",
        version="0.1.0",
        lifespan=lifespan,
        description="Queue, launch and supervise Horovod training jobs; query runs.",
        responses={401: _message("No token or a wrong one, when the service requires one.")},
        max_body_size=MAX_BODY_BYTES,
    )

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        # Every path, the OpenAPI document and /health included. The scheme is case-insensitive
        # (RFC 7235); the token is compared in constant time.
        if settings.token:
            scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), settings.token.encode()
            ):
                return JSONResponse(
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                    content={"detail": "missing or wrong token: send Authorization: Bearer TOKEN"},
                )
        return await call_next(request)

    app.state.store, app.state.supervisor, app.state.settings = store, supervisor, settings
    app.state.sweeps = sweeps

    @app.exception_handler(RequestValidationError)
    async def _unprocessable(_, exc: RequestValidationError):
        errors = [
            {**e, "msg": _text(str(e["msg"]).removeprefix("Value error, "), 2000)}
            | ({"input": _echo(e["input"])} if "input" in e else {})
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})

    @app.exception_handler(EasgdError)
    async def _refused(_, exc: EasgdError):
        """The whole family, mapped once: its status, and FastAPI's list shape for a 422."""
        message = _text(str(exc), 2000)
        if exc.http_status != 422:
            return JSONResponse(status_code=exc.http_status, content={"detail": message})
        if isinstance(exc, FilterError):
            error = {"loc": ["query"], "msg": exc.short, "type": "filter", "position": exc.position}
        else:
            error = {"loc": ["request"], "msg": message, "type": "value_error"}
        return JSONResponse(status_code=422, content={"detail": [error]})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:
            # Starlette names only the methods of the first route with this path.
            allow = {"Allow": _allowed_methods(app, request.scope)}
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=allow)
            return JSONResponse(
                status_code=405,
                headers=allow,
                content={"detail": f"{request.method} is not allowed here; use {allow['Allow']}"},
            )
        if exc.status_code == 400 and exc.__cause__ is not None:
            exc = StarletteHTTPException(400, _unreadable(exc.__cause__))
        elif exc.status_code == 413:
            # As Starlette's body limit answers when Content-Length alone is too large.
            return PlainTextResponse("Content Too Large", status_code=413)
        return await http_exception_handler(request, exc)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "store": store.display_url,
            "slots": settings.slots,
            "hosts": settings.hosts,
            "gpus": settings.gpus,
            "running": len(supervisor.handles),
            # False when another service took this store's scheduler lease.
            "scheduling": supervisor.lease.held,
        }

    body = {
        400: _message("The body is not UTF-8 JSON, or is nested too deeply to read."),
        413: {
            "description": f"The body is larger than {MAX_BODY_BYTES} bytes.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    }

    def accepted(req: JobRequest, try_code: bool = True) -> Prepared:
        """The job as it would be queued: the schema's checks, its own model and data tried,
        then the scheduler's own rule for whether this service can ever place it (422)."""
        try:
            prepared = prepare(
                req.config, req.set, req.workers, settings.data_dirs, req.name, try_code
            )
            res = prepared.config.resources
            problem = supervisor.placement_problem(
                res.workers, res.gpus_per_worker, res.host_map, res.time_limit_minutes
            )
            if problem:
                raise ConfigError([problem])
        except ConfigError as exc:
            raise RequestValidationError(
                [_config_problem(p, f) for p, (f, _) in zip(exc.problems, exc.by_field())]
            ) from None
        return prepared

    @app.post("/jobs:check", response_model=JobCheck, responses=body)
    def check(req: JobRequest) -> JobCheck:
        """What POST /jobs would answer, without queueing anything: 200 with the warnings for a
        job it would accept, else the same 422 (a form asks this as it is filled in). A custom
        method of the collection (AIP-136), beside /jobs/{job_id} rather than inside it. It
        does not try a configuration's own model and data (POST /jobs does): that takes
        seconds."""
        return JobCheck(warnings=accepted(req, try_code=False).warnings)

    @app.post("/jobs", status_code=201, response_model=JobOut, responses=body)
    def submit(req: JobRequest) -> JobOut:
        prepared = accepted(req)
        res = prepared.config.resources
        cfg = prepared.config
        job = store.create_job(
            config=prepared.frozen,
            workers=res.workers,
            name=req.name or cfg.name,
            priority=req.priority,
            source=req.source,
        )
        supervisor.wake()
        return _job_out(job, prepared.warnings)

    @app.get("/jobs", response_model=list[JobOut])
    def jobs(
        status: list[JobStatus] | None = Query(None, max_length=len(JobStatus)),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[JobOut]:
        return [
            _job_out(j)
            for j in store.list_jobs(status=[s.value for s in status or []], limit=limit)
        ]

    no_job = {404: _message("No job with this id.")}
    no_run = {404: _message("No run with this id.")}

    @app.get("/jobs/{job_id}", response_model=JobOut, responses=no_job)
    def job(job_id: int = Depends(_job_id)) -> JobOut:
        return _job_out(store.get_job(job_id))

    @app.post(
        "/jobs/{job_id}/cancel",
        response_model=JobOut,
        responses={
            **no_job,
            409: _message("The job's run has finished: the job is exiting, nothing is left."),
        },
    )
    def cancel(job_id: int = Depends(_job_id)) -> JobOut:
        """Cancel a queued or running job (an ended one is returned as it is)."""
        return _job_out(supervisor.cancel(job_id))

    not_running = {
        **no_job,
        409: _message("The job is not running here (queued, ended, or another service's)."),
    }

    @app.post("/jobs/{job_id}/checkpoint", response_model=JobOut, responses=not_running)
    def checkpoint(job_id: int = Depends(_job_id)) -> JobOut:
        """Ask a running job for a checkpoint at its next step boundary."""
        _not_a_script(job_id, "checkpoint on demand")
        return _job_out(supervisor.request_checkpoint(job_id))

    def _not_a_script(job_id: int, what: str) -> None:
        config = store.get_job(job_id).config
        if isinstance(config, dict) and config.get("script"):
            raise InvalidTransition(
                f"job {job_id} runs your own command: {what} is for the training program's jobs; "
                "its checkpoints are the tracking callback's (checkpoint.every)"
            )

    @app.post("/jobs/{job_id}/scale", response_model=JobOut, responses={**not_running, **body})
    def scale(req: ScaleRequest, job_id: int = Depends(_job_id)) -> JobOut:
        """Checkpoint a running job now, then relaunch it from there with `workers` workers."""
        _not_a_script(job_id, "scaling")
        return _job_out(supervisor.scale(job_id, req.workers))

    @app.get(
        "/jobs/{job_id}/logs",
        response_class=PlainTextResponse,
        responses={
            401: _json_message("No token or a wrong one, when the service requires one."),
            404: _json_message("No job with this id."),
        },
    )
    async def logs(
        job_id: int = Depends(_job_id),
        tail_lines: int = Query(200, alias="tail", ge=1, le=100000),
        follow: bool = False,
    ):
        j = store.get_job(job_id)
        if not follow:
            return PlainTextResponse(tail(j.log_path, tail_lines) + "\n" if j.log_path else "")
        return StreamingResponse(_follow(store, job_id, tail_lines), media_type="text/plain")

    @app.get("/runs")
    def runs(
        filter: str | None = Query(
            None, max_length=MAX_FILTER_CHARS, description="e.g. metrics.center_accuracy >= 0.9"
        ),
        order_by: list[Annotated[str, Field(max_length=MAX_ORDERING_CHARS)]] | None = Query(
            None, max_length=MAX_ORDERINGS, description="e.g. metrics.center_accuracy DESC"
        ),
        limit: int = Query(100, ge=1, le=10000),
        view: RunView = Query(
            RunView.ACTIVE, description="active runs (default), archived ones, or all"
        ),
    ) -> list[dict[str, Any]]:
        with _about("query", "order_by"):
            parse_order_by(order_by)
        with _about("query", "filter"):
            found = store.search_runs(filter, order_by, limit, view=view)
        return [formatting.run_json(r) for r in found]

    run_id_param = PathParam(pattern=RUN_ID_PATTERN, description="The run's id.")

    @app.get("/runs/{run_id}", responses=no_run)
    def run(run_id: str = run_id_param) -> dict[str, Any]:
        r = formatting.run_json(store.get_run(run_id))
        r["events"] = [e.__dict__ for e in store.events(run_id)]
        return r

    @app.get("/runs/{run_id}/metrics", responses=no_run)
    def run_metrics(
        run_id: str = run_id_param,
        key: list[Annotated[str, Field(pattern=KEY_PATTERN)]] = Query(..., max_length=100),
        max_points: int = Query(1000, ge=2, le=100000),
    ) -> dict[str, Any]:
        store.get_run(run_id)
        hist = store.metric_histories([run_id], key, max_points)
        return {k: [[p.step, p.wall_time, p.value] for p in hist[(run_id, k)]] for k in key}

    sweep_routes.add_routes(app, store, sweeps, _message, body)
    run_edit_routes.add_routes(app, store, settings.runs_dir, _message, body)
    code_routes.add_routes(app, settings, _message)
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
