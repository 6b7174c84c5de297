"""The service against its own OpenAPI document: schemathesis runs every check it has (no 5xx,
status codes, content types, headers and bodies as documented, schema-invalid requests refused,
Allow on OPTIONS and 405) against a real HTTP server on loopback, bounded in time.

The app is served without its supervisor, so a POSTed job is queued and never launched."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from db.store import Store
from service.api import create_app
from service.settings import ServiceSettings
from tests.support import BIN

pytestmark = [pytest.mark.service, pytest.mark.fuzz]

SECONDS = 60
# What JSON Schema cannot say: a string config (or sweep) must be a YAML mapping the schema
# accepts, and a filter must parse; such requests are valid to the document and still 422.
# Following a job's log waits for the job to start, and here no job ever starts. A running run
# is neither archived nor deleted, nor planned for deletion (409). An upload is any bytes to the
# document, and must be a gzip-compressed tar archive (400).
CONFIG = """
[[operations]]
include-name = "PUT /code"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401]

[[operations]]
include-name = ["POST /jobs", "POST /jobs:check", "GET /runs", "POST /sweeps"]
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 404, 422]

[[operations]]
include-name = "GET /jobs/{job_id}/logs"
parameters = { follow = false }

[[operations]]
include-name = ["POST /runs/{run_id}/archive", "DELETE /runs/{run_id}", "GET /runs/{run_id}/deletion"]
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 404, 409]
"""


@pytest.fixture
def served(easgd_home) -> Iterator[tuple[str, Store]]:
    db_url = f"sqlite:///{easgd_home / 'easgd.db'}"
    settings = ServiceSettings(hosts={"localhost": 2}, db_url=db_url, data_dirs=[easgd_home])
    store = Store(db_url)
    store.init()
    for run_id, algo in (("run-a", "eamsgd"), ("run-b", "sync")):
        store.create_run(run_id, params={"optimizer.algorithm": algo}, name=run_id, tags={"t": "x"})
        store.log_metrics(run_id, [("center_accuracy", 1, 0.5, 0.9)])
        store.add_event(run_id, "evaluated", "center accuracy 0.9", 1)
    store.finish_run("run-a", "finished")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, start_supervisor=False), log_level="error")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", store
    server.should_exit = True
    thread.join(timeout=30)


def test_the_api_conforms_to_its_openapi_document(served, tmp_path):
    url, store = served
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "report.json"
    out = subprocess.run(
        [
            str(BIN / "st"),
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-time",
            str(SECONDS),
            "--max-examples",
            "50",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
        cwd=tmp_path,
    )
    result = json.loads(report.read_text())
    # The failures section, without the summary's long reproductions.
    findings = out.stdout.partition("= FAILURES =")[2][:8000] or out.stdout[-4000:]
    assert result["failures"] == [] and result["errors"] == [], findings
    assert out.returncode == 0, findings
    assert result["test_cases"]["generated"] >= 200, result["test_cases"]
    tested = {op for op in result["valid_rates"]}
    assert {
        "POST /jobs",
        "GET /runs",
        "POST /jobs/{job_id}/cancel",
        "POST /sweeps",
        "PATCH /runs/{run_id}",
        "DELETE /runs/{run_id}",
    } <= tested, tested
    launched = [j for j in store.list_jobs(limit=100000) if j.pid or j.started_at]
    assert launched == []
