"""`PUT /code`: a working directory uploaded for jobs that run the user's own entrypoint.

The body (application/octet-stream) is the gzip-compressed tar archive `easgd submit --working-dir` sends; the reply names
the snapshot (`sha256:...`) a job's `script.code` then refers to. Uploading the same directory
twice keeps it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service import workdir
from service.settings import ServiceSettings


class CodeOut(BaseModel):
    code: str
    files: int
    bytes: int


def add_routes(
    app: FastAPI, settings: ServiceSettings, message: Callable[[str], dict[str, Any]]
) -> None:
    archive = {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "required": True,
    }

    @app.put(
        "/code",
        status_code=201,
        response_model=CodeOut,
        max_body_size=workdir.MAX_ARCHIVE_BYTES,
        openapi_extra={"requestBody": archive},
        responses={
            400: message(
                "Not a gzip-compressed tar archive, or one with an absolute or '..' path, a "
                "link leading outside, a device, or too many or too large files."
            ),
            413: {
                "description": f"The body is larger than {workdir.MAX_ARCHIVE_BYTES} bytes.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    )
    async def upload_code(request: Request) -> CodeOut:
        """Keep a working directory for jobs; running it is running code, so a service that
        listens beyond loopback requires its token for this as for every request."""
        data = await request.body()
        found = await run_in_threadpool(workdir.unpack, data, settings.code_dir)
        return CodeOut(code=found.code, files=found.files, bytes=found.bytes)
