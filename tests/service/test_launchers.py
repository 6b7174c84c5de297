"""The launcher interface, driven through the real supervisor on a real SQLite store: a launcher
that is not horovodrun (tests/service/toy_launcher.py, one class) runs jobs to success, to
failure with the cause it read, and to a cancel, with no change to the supervisor; and the
horovodrun launcher reads why an attempt failed from horovodrun's log."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from db.entities import JobRecord, JobStatus
from service import processes
from service.launchers import Allocation, FirstFailure, HorovodrunLauncher, Launched
from service.settings import ServiceSettings
from service.supervisor import Supervisor
from tests.service.toy_launcher import ToyLauncher
from training.schema import ExperimentConfig


@pytest.fixture
def settings(easgd_home) -> ServiceSettings:
    return ServiceSettings(hosts={"localhost": 4}, grace_seconds=5.0)


@pytest.fixture
def toy() -> Iterator[ToyLauncher]:
    launcher = ToyLauncher()
    yield launcher
    for _, _, env in launcher.asked:  # nothing a failed test started outlives it
        processes.terminate_job(env[processes.TOKEN_ENV], None, None, grace=0.5)


def _supervisor(store, settings, launcher) -> Supervisor:
    sup = Supervisor(store, settings, launcher=launcher)
    sup.reconcile()
    return sup


def _let_it_go(job: JobRecord) -> None:
    (Path(job.log_path).parent / "go").touch()


def _until_ended(sup: Supervisor, store, job_id: int, timeout: float = 30) -> JobRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.tick()
        job = store.get_job(job_id)
        if job.status.is_terminal():
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {store.get_job(job_id).status} after {timeout} s")


def test_a_job_goes_queued_running_succeeded_through_another_launcher(store, settings, toy):
    sup = _supervisor(store, settings, toy)
    job = store.create_job(
        config={"optimizer": {"tau": 7}, "resources": {"workers": 2}}, workers=2, source="cli"
    )
    assert store.get_job(job.id).status is JobStatus.QUEUED
    sup.tick()
    running = store.get_job(job.id)
    assert running.status is JobStatus.RUNNING and running.hosts == "localhost:2"
    ((attempt, argv, env),) = toy.asked
    # The launcher got the configuration typed, every default filled in by the schema.
    assert isinstance(attempt.config, ExperimentConfig)
    assert attempt.config.optimizer.tau == 7
    assert attempt.config.training == ExperimentConfig().training
    assert attempt.allocation.hosts == {"localhost": 2} and not attempt.resume
    assert env[processes.TOKEN_ENV] == running.launch_token
    assert env[processes.JOB_ENV] == str(job.id) and env["EASGD_SOURCE"] == "cli"
    assert psutil.Process(running.pid).cmdline()[:2] == argv[:2]
    sup.tick()
    assert store.get_job(job.id).status is JobStatus.RUNNING  # it waits for its go
    _let_it_go(running)
    done = _until_ended(sup, store, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.exit_code == 0
    assert f"toy: job {job.id} ran" in open(done.log_path).read()
    assert sup.handles == {}


def test_a_failed_job_carries_the_cause_its_launcher_read(store, settings, toy):
    sup = _supervisor(store, settings, toy)
    job = store.create_job(
        config={"tags": {"exit": "3", "why": "the toy's data would not load"}}, workers=1
    )
    sup.tick()
    _let_it_go(store.get_job(job.id))
    done = _until_ended(sup, store, job.id)
    assert done.status is JobStatus.FAILED and done.exit_code == 3
    first, second, *_ = done.message.splitlines()
    assert first == "the toy's data would not load"
    assert second.startswith("exit code 3")


def test_a_cancel_stops_the_attempt_through_its_launcher(store, settings, toy):
    sup = _supervisor(store, settings, toy)
    job = store.create_job(config={}, workers=1)
    sup.tick()
    pid = store.get_job(job.id).pid
    done = sup.cancel(job.id)
    assert done.status is JobStatus.CANCELLED and done.exit_code == -signal.SIGTERM
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_stored_configuration_this_version_refuses_fails_its_job_in_one_line(
    store, settings, toy
):
    sup = _supervisor(store, settings, toy)
    old = store.create_job(config={"optimizer": {"momentum_of_old": 0.9}}, workers=1)
    after = store.create_job(config={}, workers=1)
    sup.tick()
    failed = store.get_job(old.id)
    assert failed.status is JobStatus.FAILED and "\n" not in failed.message
    assert failed.message.startswith(
        f"configuration: job {old.id}'s stored configuration is refused now (by this version's "
        "schema, or a file it names is gone); submit the job again"
    )
    assert "optimizer.momentum_of_old: unknown field" in failed.message
    assert [a.job_id for a, _, _ in toy.asked] == [after.id]  # the queue went on without it


def test_horovodrun_names_the_first_failed_rank_and_its_host(tmp_path, easgd_home):
    log = tmp_path / "job.log"
    log.write_text(
        "[2]<stderr>:easgd: run failed: DataError: shard 2 is empty\n"
        "Process name: 3\nExit code: 255\n"
    )
    launcher = HorovodrunLauncher(ServiceSettings(hosts={"a": 2, "b": 2}))
    launched = Launched(1, Allocation({"a": 2, "b": 2}), "t", None, None, log)
    failure = launcher.failure(launched)
    assert failure.reason == "run failed: DataError: shard 2 is empty"
    assert failure.first == FirstFailure(3, 255, "b")
    assert not launcher.signals_every_rank(launched)
