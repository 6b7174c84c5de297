"""One store everywhere: what `easgd up` launches, a plain shell's `easgd runs list` lists, with
no variable set in either, and every entry point names the store it uses. HOME is a scratch
folder, so the default store (~/.easgd) is this test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import BIN, QUIET_TF, ROOT, free_port, kill_jobs
from training.run.metrics import TRAIN_SECONDS

TINY = ROOT / "tests" / "training" / "tiny.yaml"


def plain_shell(home: Path) -> dict[str, str]:
    """A new terminal's environment: none of the product's variables, HOME as given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASGD_")}
    return {**env, **QUIET_TF, "HOME": str(home)}


def easgd(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "easgd"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.service
def test_a_job_easgd_up_ran_is_listed_by_a_plain_shell(tmp_path):
    home = tmp_path / "user"
    home.mkdir()
    store = home / ".easgd" / "easgd.db"
    port = free_port()
    up = subprocess.Popen(
        [str(BIN / "easgd"), "up", "--no-ui", "--port", str(port), "--slots", "2"],
        env=plain_shell(home),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        said = []
        while not any("run store" in line for line in said):
            line = up.stdout.readline()
            assert line, "easgd up stopped: " + "".join(said)
            said.append(line)
        assert f"easgd: run store sqlite:///{store}\n" in said
        assert not any("other shells" in line for line in said)  # the default: nothing to set
        config = yaml.safe_load(TINY.read_text())
        config["training"]["max_steps"] = 10  # what is listed matters here, not the training
        job = httpx.post(f"http://127.0.0.1:{port}/jobs", json={"config": config}, timeout=60)
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        deadline = time.time() + 240
        while time.time() < deadline:
            status = httpx.get(f"http://127.0.0.1:{port}/jobs/{job_id}", timeout=30).json()
            if status["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
        assert status["status"] == "succeeded", status
        # Another terminal, elsewhere, with nothing set.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        listed = easgd(plain_shell(home), "runs", "list", cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0] == f"store: sqlite:///{store}"
        assert any(line.startswith(f"job-{job_id} ") for line in lines[3:]), listed.stdout
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
        kill_jobs(home / ".easgd")


@pytest.mark.horovod
def test_a_shell_run_sets_up_a_fresh_store_and_records_its_training_seconds(tmp_path):
    """`python -m training` in a new HOME: the store is created, not left unrecorded."""
    home = tmp_path / "user"
    home.mkdir()
    env = plain_shell(home)
    done = subprocess.run(
        [sys.executable, "-m", "training", "--config", str(TINY)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning" not in done.stderr
    listed = easgd(env, "runs", "list", "--format", "json", cwd=tmp_path)
    (run,) = yaml.safe_load(listed.stdout)
    assert run["name"] == "tiny" and run["status"] == "finished"
    shown = easgd(
        env, "runs", "metrics", run["id"], "--key", TRAIN_SECONDS, "--format", "json", cwd=tmp_path
    )
    points = yaml.safe_load(shown.stdout)
    seconds = [p["value"] for p in points]
    # From 0 at the first evaluation, growing, and less than the run's wall time.
    assert seconds[0] == 0.0 and seconds == sorted(seconds) and seconds[-1] > 0
    assert seconds[-1] < points[-1]["wall_time"]
