"""A small client of the REST API, used by the CLI and the UI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

from db.errors import EasgdError
from service.settings import DEFAULT_PORT


class ApiError(EasgdError):
    """The service refused (its 4xx: the user's to fix, exit 2) or failed (exit 1)."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.exit_code = 2 if status and 400 <= status < 500 else 1


class ServiceUnreachable(ApiError):
    """Nothing answered at the service's URL: not a refusal, so a page can say where it looked
    and how to start the service rather than what to fix."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


def default_url() -> str:
    return os.environ.get("EASGD_API_URL") or f"http://127.0.0.1:{DEFAULT_PORT}"


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        self.url = (url or default_url()).rstrip("/")
        token = token or os.environ.get("EASGD_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise self._not_a_url(exc) from None

    def _not_a_url(self, exc: Exception) -> ApiError:
        error = ApiError(
            f"the job service's URL is not a URL: {exc}; give one such as "
            f"http://127.0.0.1:{DEFAULT_PORT} with --api or EASGD_API_URL "
            f"(received: {self.url!r})"
        )
        error.exit_code = 2  # the user's to fix, as a 4xx
        return error

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:  # some are found only when a request is made
            raise self._not_a_url(exc) from None
        except httpx.TransportError as exc:
            raise ServiceUnreachable(
                f"cannot reach the job service at {self.url} ({exc}); start it with "
                "`easgd serve` or `easgd up`, or pass --api URL",
                self.url,
            ) from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            if isinstance(detail, list):
                text = "; ".join(
                    d.get("msg", str(d)) if isinstance(d, dict) else str(d) for d in detail
                )
            else:
                text = str(detail)
            raise ApiError(f"{r.status_code}: {text}", r.status_code, detail)
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def submit(
        self,
        config: dict[str, Any] | str,
        overrides: list[str] | None = None,
        workers: int | None = None,
        name: str | None = None,
        priority: int = 0,
        source: str = "cli",
    ) -> dict[str, Any]:
        body = {
            "config": config,
            "set": overrides or [],
            "workers": workers,
            "name": name,
            "priority": priority,
            "source": source,
        }
        # The service may first try a configuration's own model and data (up to 120 s).
        return self._call("POST", "/jobs", json=body, timeout=180)

    def upload_code(self, archive: bytes) -> dict[str, Any]:
        """A working directory packed by `service.workdir.pack`: its snapshot's id and size."""
        return self._call(
            "PUT",
            "/code",
            content=archive,
            headers={"Content-Type": "application/octet-stream"},
            timeout=300,
        )

    def check(self, config: dict[str, Any] | str) -> dict[str, Any]:
        """What `submit` would answer, with nothing queued: the warnings of a job the service
        would accept; ApiError (422, each problem naming its field) for one it would refuse."""
        return self._call("POST", "/jobs:check", json={"config": config}, timeout=5)

    def jobs(self, status: list[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs", params={"status": status or [], "limit": limit})

    def job(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def checkpoint(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/checkpoint")

    def scale(self, job_id: int, workers: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/scale", json={"workers": workers})

    def set_tags(self, run_id: str, tags: dict[str, str | None]) -> dict[str, Any]:
        """Set tags (a None value removes one); returns the run."""
        return self._call("PATCH", f"/runs/{run_id}", json={"tags": tags})

    def set_note(self, run_id: str, note: str | None) -> dict[str, Any]:
        """The run's note; empty or None removes it."""
        return self._call("PATCH", f"/runs/{run_id}", json={"note": note})

    def archive_run(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/runs/{run_id}/archive")

    def restore_run(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/runs/{run_id}/restore")

    def deletion(self, run_id: str, files: bool = False) -> dict[str, Any]:
        """What `delete_run` would remove (its `message` says it in one line), refused as it
        would be, with nothing changed: to ask before deleting."""
        return self._call("GET", f"/runs/{run_id}/deletion", params={"files": files})

    def delete_run(self, run_id: str, files: bool = False) -> dict[str, Any]:
        """Delete the run, and with `files` its directory; the reply's `message` says what
        was done (and when the directory could not be removed)."""
        return self._call("DELETE", f"/runs/{run_id}", params={"files": files})

    def create_sweep(
        self,
        sweep: dict[str, Any] | str,
        base: dict[str, Any] | str | None = None,
        source: str = "cli",
    ) -> dict[str, Any]:
        return self._call("POST", "/sweeps", json={"sweep": sweep, "base": base, "source": source})

    def sweeps(self, status: list[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/sweeps", params={"status": status or [], "limit": limit})

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        return self._call("GET", f"/sweeps/{sweep_id}")

    def stop_sweep(self, sweep_id: int) -> dict[str, Any]:
        return self._call("POST", f"/sweeps/{sweep_id}/stop")

    def logs(self, job_id: int, tail: int = 200) -> str:
        return self._call("GET", f"/jobs/{job_id}/logs", params={"tail": tail})

    def follow_logs(self, job_id: int, tail: int = 200) -> Iterator[str]:
        try:
            with self.http.stream(
                "GET", f"/jobs/{job_id}/logs", params={"tail": tail, "follow": True}, timeout=None
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ApiError(f"{r.status_code}: {r.text}", r.status_code)
                yield from r.iter_text()
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the job service at {self.url} ({exc})") from None
