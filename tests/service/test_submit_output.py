"""What `easgd submit` tells a person (the job, the run it becomes, how to follow it, the UI's
Jobs page when the UI is known) and what it tells a script with --quiet (the id alone)."""

from __future__ import annotations

import http.server
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from service.cli.jobs import submitted_text, ui_url
from tests.support import BIN, free_port

JOB = {"id": 7, "status": "queued", "workers": 2}


class _Health(http.server.BaseHTTPRequestHandler):
    """Streamlit's health answer, as a UI started by `easgd up` gives it."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        ok = self.path == "/_stcore/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"")

    def log_message(self, *args) -> None:
        pass


@contextmanager
def _ui_answering() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_text_names_the_job_its_run_and_the_commands_to_follow_it():
    assert submitted_text(JOB, None, None).splitlines() == [
        "job 7 queued (2 workers): it becomes run job-7",
        "  follow its log:  easgd jobs logs 7 --follow",
        "  its state:       easgd jobs show 7",
    ]
    text = submitted_text(JOB, "http://10.0.0.5:9000", "http://10.0.0.5:8501")
    assert "easgd jobs logs 7 --follow --api http://10.0.0.5:9000" in text
    assert "easgd jobs show 7 --api http://10.0.0.5:9000" in text
    assert text.splitlines()[-1] == "  in the UI:       http://10.0.0.5:8501/jobs?job=7"


def test_the_ui_is_named_when_known_and_left_out_otherwise(monkeypatch):
    monkeypatch.delenv("EASGD_UI_URL", raising=False)
    monkeypatch.setenv("EASGD_UI_PORT", str(free_port()))  # nothing listens there
    assert ui_url("http://127.0.0.1:8765") is None
    with _ui_answering() as port:
        monkeypatch.setenv("EASGD_UI_PORT", str(port))
        assert ui_url("http://127.0.0.1:8765") == f"http://127.0.0.1:{port}"
        # A service elsewhere: its UI is not looked for on this machine.
        assert ui_url("http://192.0.2.1:8765") is None
    monkeypatch.setenv("EASGD_UI_PORT", "not-a-port")
    assert ui_url("http://127.0.0.1:8765") is None
    monkeypatch.setenv("EASGD_UI_URL", "https://ui.example.org/easgd/")
    assert ui_url("http://192.0.2.1:8765") == "https://ui.example.org/easgd"


def _easgd(service, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "easgd"), *args],
        capture_output=True,
        text=True,
        env={**service.env, **env},
        timeout=120,
    )


@pytest.mark.service
@pytest.mark.horovod
def test_submit_says_how_to_follow_the_job_and_quiet_prints_its_id(service):
    nowhere = {"EASGD_UI_PORT": str(free_port())}
    short = ("--set", "training.max_steps=2")  # the jobs need only exist
    said = _easgd(
        service, "submit", "tests/training/tiny.yaml", *short, "--name", "said", **nowhere
    )
    assert said.returncode == 0, said.stderr
    first, log, show = said.stdout.splitlines()
    job_id = int(re.fullmatch(r"job (\d+) queued \(2 workers\): it becomes run job-\1", first)[1])
    assert log == f"  follow its log:  easgd jobs logs {job_id} --follow"
    assert show == f"  its state:       easgd jobs show {job_id}"
    # The commands it shows work as shown.
    shown = _easgd(service, *shlex.split(show.split(":", 1)[1])[1:])
    assert shown.returncode == 0 and re.search(rf"^id\s+{job_id}$", shown.stdout, re.M), shown

    quiet = _easgd(service, "submit", "-q", "tests/training/tiny.yaml", *short, "--name", "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == f"{job_id + 1}\n"
    assert httpx.get(f"{service.url}/jobs/{job_id + 1}").json()["name"] == "quiet"

    with _ui_answering() as port:
        named = _easgd(
            service, "submit", "tests/training/tiny.yaml", *short, EASGD_UI_PORT=str(port)
        )
    assert named.returncode == 0, named.stderr
    assert named.stdout.splitlines()[-1] == (
        f"  in the UI:       http://127.0.0.1:{port}/jobs?job={job_id + 2}"
    )
    for n in (job_id, job_id + 1, job_id + 2):
        assert _easgd(service, "jobs", "cancel", str(n)).returncode in (0, 2)
