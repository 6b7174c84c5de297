"""The command line's failures are one line and an exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import BIN

BAD_URLS = ["nope://", "sqlite+nodriver:///x.db", "postgresql+nodriver://u@h/db", "::"]


def _easgd(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "easgd"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_store_url_is_one_line_and_exit_2(url, easgd_home):
    for args, env in (
        (["--db-url", url, "runs", "list"], {}),
        (["runs", "list"], {"EASGD_DB_URL": url}),
    ):
        proc = _easgd(args, env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("easgd: store URL:"), proc.stderr
        assert "Traceback" not in proc.stderr


def test_in_process_main_maps_the_store_config_error(capsys, easgd_home):
    from service.cli import main

    assert main(["--db-url", "nope://", "runs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown database kind 'nope'" in err
    assert sys.exc_info() == (None, None, None)


def test_submit_of_a_file_that_is_not_utf8_is_one_line(tmp_path, easgd_home):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    # No service is needed: the file is read before anything is sent.
    proc = _easgd(["submit", str(bad)], {"EASGD_API_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"easgd: submit: {bad}: is not UTF-8 text (byte 0xe9 at offset 9); save it as UTF-8"
    ]


def test_an_uninitialized_store_and_a_missing_run_exit_1_and_2(easgd_home):
    proc = _easgd(["runs", "list"], {})
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert "run `easgd init` once" in proc.stderr
    assert _easgd(["init"], {}).returncode == 0
    proc = _easgd(["runs", "show", "no-such-run"], {})
    assert proc.returncode == 2 and proc.stderr.startswith("easgd: no run 'no-such-run'")
    assert len(proc.stderr.splitlines()) == 1


def test_an_invalid_filter_shows_where(easgd_home):
    assert _easgd(["init"], {}).returncode == 0
    proc = _easgd(["runs", "query", "status = "], {})
    assert proc.returncode == 2 and proc.stderr.startswith("easgd: invalid filter: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("given", ["0", "-3", "x", str(2**63)])
def test_a_sweep_id_that_is_none_names_the_argument(given, easgd_home):
    for action in ("show", "stop"):
        proc = _easgd(["sweep", action, "--", given], {})
        assert proc.returncode == 2, proc.stderr
        said = "argument sweep_id: a sweep id: a whole number from 1, as `easgd sweep list` shows"
        assert f"{said} (received: '{given}')" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:port"])
def test_a_malformed_service_url_is_one_line_and_exit_2(url, easgd_home):
    for args, env in (
        (["jobs", "list", "--api", url], {}),
        (["jobs", "list"], {"EASGD_API_URL": url}),
        (["sweep", "list"], {"EASGD_API_URL": url}),
    ):
        proc = _easgd(args, env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("easgd: the job service's URL is not a URL:"), lines[0]
        assert f"(received: {url!r})" in lines[0]
