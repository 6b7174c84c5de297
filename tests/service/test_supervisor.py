"""Scheduling, cancel, failure and reconciliation on a real SQLite store, with the horovodrun
launcher's process functions replaced where a real horovodrun is not the point
(tests/service/test_service.py runs the real ones)."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from db.entities import JobStatus
from db.store import Store
from service import processes
from service.launchers import HorovodrunLauncher
from service.launchers.horovodrun import first_failed
from service.lease import SchedulerBusy
from service.settings import ServiceSettings
from service.supervisor import Supervisor

CONFIG = {"resources": {"workers": 2}}


class FakePopen:
    """What the supervisor reads of a `subprocess.Popen`: its pid and its exit code."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


@dataclass
class FakeProcesses:
    """spawn, is_same_process and terminate_job, recording what the supervisor asked."""

    alive: set[int] = field(default_factory=set)
    spawned: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    popens: dict[int, FakePopen] = field(default_factory=dict)
    terminated: list[tuple] = field(default_factory=list)
    ended_by: int = -signal.SIGTERM

    def spawn(self, argv, env, log_path: Path, cwd: Path):
        pid = 5000 + len(self.spawned)
        self.spawned.append((list(argv), dict(env)))
        self.popens[pid] = FakePopen(pid)
        self.alive.add(pid)
        return self.popens[pid], 1000.0 + pid

    def is_same_process(self, pid, start_time) -> bool:
        return pid in self.alive and start_time == 1000.0 + pid

    def terminate_job(self, token, root_pid, root_start_time, grace) -> int | None:
        self.terminated.append((token, root_pid, root_start_time))
        if root_pid in self.popens:
            # What Popen reads once psutil has reaped its child: 0, whatever happened.
            self.popens[root_pid].returncode = 0
        self.alive.discard(root_pid)
        return self.ended_by

    def supervisor(self, store: Store, settings: ServiceSettings) -> Supervisor:
        launcher = HorovodrunLauncher(
            settings,
            spawn=self.spawn,
            is_same_process=self.is_same_process,
            terminate_job=self.terminate_job,
        )
        return Supervisor(store, settings, launcher=launcher, is_same_process=self.is_same_process)


@pytest.fixture
def settings(easgd_home) -> ServiceSettings:
    return ServiceSettings(hosts={"localhost": 4}, grace_seconds=0.1)


@pytest.fixture
def fake() -> FakeProcesses:
    return FakeProcesses()


def _start_rank0(store: Store, job_id: int) -> str:
    """What rank 0's store sink does when training starts."""
    run_id = f"job-{job_id}"
    store.create_run(run_id, params={}, job_id=job_id, source="api")
    return run_id


def _launched(fake, store, settings):
    """A supervisor that has launched one 2-worker job (with the fake process functions)."""
    sup = fake.supervisor(store, settings)
    sup.reconcile()
    job = store.create_job(config=CONFIG, workers=2)
    sup.tick()
    return sup, job


def test_each_launch_gets_its_own_token_in_the_store_and_the_environment(store, settings, fake):
    sup = fake.supervisor(store, settings)
    sup.reconcile()
    ids = [store.create_job(config=CONFIG, workers=2).id for _ in range(2)]
    sup.tick()
    tokens = [store.get_job(i).launch_token for i in ids]
    assert all(t and len(t) >= 32 for t in tokens) and tokens[0] != tokens[1]
    envs = [env for _, env in fake.spawned]
    assert [e[processes.TOKEN_ENV] for e in envs] == tokens
    assert [e[processes.JOB_ENV] for e in envs] == [str(i) for i in ids]
    # The store's record carries it; the API's reply leaves it out (tests/service/test_service.py).
    assert store.get_job(ids[0]).to_dict()["launch_token"] == tokens[0]


def test_cancel_sweeps_by_token_and_closes_the_run_as_cancelled(store, settings, fake):
    sup, job = _launched(fake, store, settings)
    running = store.get_job(job.id)
    run_id = _start_rank0(store, job.id)
    done = sup.cancel(job.id)
    assert fake.terminated == [(running.launch_token, running.pid, running.pid_start_time)]
    assert done.status is JobStatus.CANCELLED
    assert done.exit_code == -signal.SIGTERM  # not the 0 Popen reads after the sweep
    run = store.get_run(run_id)
    assert run.status == "cancelled" and run.end_time is not None
    assert "cancel" in run.error


def test_a_cancel_that_needed_sigkill_reports_it(store, settings, fake):
    fake.ended_by = -signal.SIGKILL
    sup, job = _launched(fake, store, settings)
    assert sup.cancel(job.id).exit_code == -signal.SIGKILL


def test_a_failed_job_says_the_programs_reason_first_and_closes_its_run(store, settings, fake):
    sup, job = _launched(fake, store, settings)
    running = store.get_job(job.id)
    run_id = _start_rank0(store, job.id)
    reason = "run failed: DataError: data.path: cannot read '/d/x.npz' as .npz"
    lines = [f"[1,0]<stderr>:noise {i}" for i in range(30)]
    lines[10] = f"[0]<stderr>:easgd: {reason}"
    with open(running.log_path, "a") as log:
        log.write("\n".join(lines + ["Traceback (most recent call last):", "RuntimeError: x"]))
    fake.popens[running.pid].returncode = 1
    sup.tick()
    failed = store.get_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.exit_code == 1
    first, second, *rest = failed.message.splitlines()
    assert first == reason
    assert second.startswith("exit code 1")
    assert rest[-1] == "RuntimeError: x"
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error == reason


def test_a_job_that_fails_before_its_run_exists_fails_cleanly(store, settings, fake):
    sup, job = _launched(fake, store, settings)
    fake.popens[store.get_job(job.id).pid].returncode = 2
    sup.tick()
    failed = store.get_job(job.id)
    assert failed.status is JobStatus.FAILED and failed.message.startswith("exit code 2")
    assert sup.handles == {}


def test_a_run_closed_by_rank_0_keeps_its_own_status(store, settings, fake):
    sup, job = _launched(fake, store, settings)
    run_id = _start_rank0(store, job.id)
    store.finish_run(run_id, "failed", "ValueError: own reason")
    fake.popens[store.get_job(job.id).pid].returncode = 1
    sup.tick()
    assert store.get_job(job.id).status is JobStatus.FAILED
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error == "ValueError: own reason"


def test_restart_adopts_a_live_job_and_fails_a_lost_one_with_its_run(store, settings, fake):
    first = fake.supervisor(store, settings)
    first.reconcile()
    live = store.create_job(config=CONFIG, workers=2)
    lost = store.create_job(config=CONFIG, workers=2)
    first.tick()
    lost_run = _start_rank0(store, lost.id)
    fake.alive.discard(store.get_job(lost.id).pid)  # its horovodrun died with the service
    first.stop()
    second = fake.supervisor(store, settings)
    notes = second.reconcile()
    assert set(second.handles) == {live.id} and len(notes) == 2
    assert store.get_job(lost.id).status is JobStatus.FAILED
    run = store.get_run(lost_run)
    assert run.status == "failed" and run.error == "lost: the service stopped while it ran"
    second.cancel(live.id)
    assert fake.terminated[-1][0] == store.get_job(live.id).launch_token  # found by its token


def test_a_second_supervisor_on_the_same_store_is_refused_naming_the_first(store, settings):
    real = FakeProcesses()
    real.is_same_process = processes.is_same_process  # the holder (this process) is alive
    first = real.supervisor(store, settings)
    first.reconcile()
    other = ServiceSettings(port=9999, hosts={"localhost": 4})
    second = real.supervisor(store, other)
    with pytest.raises(SchedulerBusy) as refused:
        second.reconcile()
    line = str(refused.value)
    assert "\n" not in line
    assert f"another easgd service (http://127.0.0.1:8765, pid {os.getpid()} on " in line
    assert "stop it, or use another EASGD_HOME/EASGD_DB_URL" in line
    store.create_job(config=CONFIG, workers=2)
    assert second.handles == {}
    first.stop()  # a clean stop releases the lease
    second.reconcile()
    assert store.get_lease().holder == "http://127.0.0.1:9999"


def test_a_lease_left_by_a_dead_service_on_this_host_is_taken_at_once(store, settings, fake):
    first = fake.supervisor(store, settings)
    first.reconcile()
    # first is killed -9: it releases nothing ...
    fake.is_same_process = lambda pid, start: False  # ... and its pid is gone
    second = fake.supervisor(store, ServiceSettings(port=9999, hosts={"localhost": 4}))
    second.reconcile()
    assert store.get_lease().holder == "http://127.0.0.1:9999"


def test_a_service_whose_lease_was_taken_over_launches_nothing(store, fake, capfd):
    sup = fake.supervisor(store, ServiceSettings(hosts={"localhost": 4}, lease_seconds=0.0))
    sup.reconcile()
    store.take_lease(holder="http://elsewhere:1", token="other", pid=1, hostname="far", ttl=30.0)
    job = store.create_job(config=CONFIG, workers=2)
    sup.tick()
    assert fake.spawned == [] and store.get_job(job.id).status is JobStatus.QUEUED
    assert not sup.lease.held  # what /health reports as "scheduling"
    assert (
        "not scheduling any more: another easgd service (http://elsewhere:1"
        in capfd.readouterr().err
    )


class YieldingStore(Store):
    """A real store whose job reads and writes first hand the interpreter to other threads for a
    random moment, as a busy machine would, so that two racing threads meet in every order
    within a few rounds, not thousands."""

    def get_job(self, job_id):
        time.sleep(random.uniform(0, 0.004))
        return super().get_job(job_id)

    def update_job(self, job_id, **fields):
        time.sleep(random.uniform(0, 0.004))
        return super().update_job(job_id, **fields)

    def transition_job(self, job_id, to, **kw):
        time.sleep(random.uniform(0, 0.004))
        return super().transition_job(job_id, to, **kw)


def _after(barrier: threading.Barrier, call, *args) -> None:
    barrier.wait()
    call(*args)


def test_a_cancel_racing_a_launch_never_leaves_a_cancelled_job_running(easgd_home, settings):
    store = YieldingStore()
    store.init()
    fake = FakeProcesses()
    sup = fake.supervisor(store, settings)
    sup.reconcile()
    for _ in range(40):
        job = store.create_job(config=CONFIG, workers=4)
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=_after, args=(barrier, sup.tick)),
            threading.Thread(target=_after, args=(barrier, sup.cancel, job.id)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = store.get_job(job.id)
        assert done.status is JobStatus.CANCELLED
        if done.pid is not None:  # it was launched before the cancel: then it was stopped
            assert (done.launch_token, done.pid, done.pid_start_time) in fake.terminated
        assert not fake.alive, "a cancelled job's horovodrun still runs, holding its slots"
        assert sup.handles == {}
    store.dispose()


def test_a_service_that_gets_the_lease_back_counts_the_jobs_launched_meanwhile(store, fake):
    four = ServiceSettings(hosts={"localhost": 4})
    a = fake.supervisor(store, four)
    a.reconcile()
    # a stalls; b, on the same store, finds a's process gone and takes over ...
    b = fake.supervisor(store, ServiceSettings(port=9999, hosts={"localhost": 4}))
    b.reconcile()
    big = store.create_job(config=CONFIG, workers=4)
    b.tick()
    assert store.get_job(big.id).status is JobStatus.RUNNING
    b.stop()  # ... and stops cleanly: its job runs on, holding all 4 slots
    small = store.create_job(config=CONFIG, workers=2)
    a.tick()
    a.tick()
    assert len(fake.spawned) == 1, "a launched onto slots b's job holds"
    assert store.get_job(small.id).status is JobStatus.QUEUED
    assert a.lease.held and big.id in a.handles
    fake.alive.discard(store.get_job(big.id).pid)  # the big job ends: its slots are free
    a.tick()
    assert store.get_job(small.id).status is JobStatus.RUNNING and len(fake.spawned) == 2


def test_a_launch_after_the_lease_was_lost_is_refused_by_the_store(store, settings, fake):
    sup = fake.supervisor(store, settings)
    sup.reconcile()
    store.take_lease(
        holder="http://elsewhere:1",
        token="other",
        pid=1,
        hostname="far",
        ttl=30.0,
        holder_gone=lambda lease: True,
    )
    job = store.create_job(config=CONFIG, workers=2)
    sup.tick()  # within the renewal interval: it still believes it holds the lease
    assert fake.spawned == [] and store.get_job(job.id).status is JobStatus.QUEUED


def test_a_job_gets_no_token_of_the_services_own(store, settings, fake, monkeypatch):
    monkeypatch.setenv("EASGD_API_TOKEN", "the-services-secret")
    monkeypatch.setenv("EASGD_UI_TOKEN", "another-secret")
    monkeypatch.setenv(processes.TOKEN_ENV, "a-token-inherited-from-elsewhere")
    monkeypatch.setenv("EASGD_KEPT", "kept")
    sup, job = _launched(fake, store, settings)
    ((_, env),) = fake.spawned
    assert "EASGD_API_TOKEN" not in env and "EASGD_UI_TOKEN" not in env
    assert env[processes.TOKEN_ENV] == store.get_job(job.id).launch_token
    assert env["EASGD_KEPT"] == "kept"
    assert "the-services-secret" not in " ".join(env.values())


TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("ready", flush=True)
time.sleep(600)
"""


def test_a_job_recorded_before_launch_tokens_is_adopted_and_cancelled_whole(
    store, settings, tmp_path
):
    """Its row has no token: the cancel finds its processes through its own root's tree."""
    log = tmp_path / "job.log"
    proc, started = processes.spawn([sys.executable, "-c", TREE], dict(os.environ), log, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while "ready" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) == 2
        job = store.create_job(config=CONFIG, workers=2)
        store.transition_job(job.id, JobStatus.RUNNING, log_path=str(log))
        store.update_job(job.id, pid=proc.pid, pid_start_time=started)
        assert store.get_job(job.id).launch_token is None
        sup = Supervisor(store, settings)  # the real process functions
        assert "supervised again" in sup.reconcile()[0]
        done = sup.cancel(job.id)
        assert done.status is JobStatus.CANCELLED and done.exit_code == -signal.SIGTERM
        proc.wait(timeout=10)
        gone, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == []
        sup.stop()
    finally:
        for p in [proc.pid]:
            try:
                psutil.Process(p).kill()
            except psutil.NoSuchProcess:
                pass


def _hosts_of(fake: FakeProcesses, n: int) -> str:
    argv = fake.spawned[n][0]
    return argv[argv.index("-H") + 1]


def test_a_jobs_hosts_are_honoured_and_slots_shared(store, easgd_home, fake):
    settings = ServiceSettings(hosts={"a": 2, "b": 2}, grace_seconds=0.1)
    sup = fake.supervisor(store, settings)
    sup.reconcile()
    on_b = store.create_job(config={"resources": {"workers": 2, "hosts": "b:2"}}, workers=2)
    anywhere = store.create_job(config=CONFIG, workers=2)
    waits = store.create_job(config={"resources": {"workers": 1, "hosts": "b:1"}}, workers=1)
    sup.tick()
    assert _hosts_of(fake, 0) == "b:2" and store.get_job(on_b.id).hosts == "b:2"
    assert _hosts_of(fake, 1) == "a:2" and store.get_job(anywhere.id).hosts == "a:2"
    assert store.get_job(waits.id).status is JobStatus.QUEUED  # b is full: it waits, not fails
    assert len(fake.spawned) == 2


@pytest.mark.parametrize(
    "resources, workers, phrase",
    [
        (
            {"hosts": "c:2"},
            2,
            "resources.hosts: c is not among this service's hosts; this service has a:2,b:2",
        ),
        ({"hosts": "a:3"}, 3, "resources.hosts: a:3 asks more slots than this service has"),
        ({}, 5, "resources.workers: needs 5 slots; this service has a:2,b:2 (4 slots)"),
        ({"gpus_per_worker": 1}, 1, "resources.gpus_per_worker: needs 1 GPUs; this service has 0"),
    ],
)
def test_a_job_the_service_can_never_place_fails_with_the_reason(
    store, easgd_home, fake, resources, workers, phrase
):
    sup = fake.supervisor(store, ServiceSettings(hosts={"a": 2, "b": 2}))
    sup.reconcile()
    job = store.create_job(config={"resources": {"workers": workers, **resources}}, workers=workers)
    sup.tick()
    done = store.get_job(job.id)
    assert done.status is JobStatus.FAILED and phrase in done.message
    assert fake.spawned == []


def test_the_rank_that_failed_first_is_read_from_the_last_attempt_horovodrun_logged():
    attempt = (
        "RuntimeError: Horovod detected that one or more processes exited with non-zero status, "
        "thus causing the job to be terminated. The first process to do so was:\n"
        "Process name: {rank}\nExit code: {code}\n"
    )
    log = attempt.format(rank=0, code=1) + "easgd service: relaunched\n"
    assert first_failed(log) == (0, 1)
    assert first_failed(log + attempt.format(rank=3, code=255)) == (3, 255)
    assert first_failed("Process 1 exit with status code 255.\n") is None
