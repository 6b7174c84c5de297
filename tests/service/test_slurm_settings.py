"""`easgd serve --launcher slurm`'s refusals, each in one line, before anything starts; and what
the Slurm launcher reads of a failed attempt's log."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import BIN


@pytest.mark.parametrize(
    "args, env, phrase",
    [
        (["--slots", "2"], {}, "Slurm places the ranks; drop --hosts and --slots"),
        (["--hosts", "a:2"], {}, "Slurm places the ranks; drop --hosts and --slots"),
        (["--tasks-per-node", "0"], {}, "--tasks-per-node must be at least 1 (received: 0)"),
        ([], {"PATH": "/nonexistent"}, "sinfo: No such file or directory; is Slurm installed"),
    ],
)
def test_a_slurm_service_refuses_what_cannot_work_in_one_line(tmp_path, args, env, phrase):
    done = subprocess.run(
        [str(BIN / "easgd"), "serve", "--launcher", "slurm", "--port", "1", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "EASGD_HOME": str(tmp_path), **env},
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0], done.stderr


def test_the_node_that_failed_first_is_read_from_the_attempts_own_host_line(tmp_path):
    """The batch script names its nodes once, at the top of its attempt; by the time a rank
    fails the log's tail may be all training output. horovodrun's words are real ones."""
    from service.launchers import Allocation, Launched
    from service.launchers.slurm import SlurmJob, SlurmLauncher
    from service.settings import ServiceSettings

    log = tmp_path / "job.log"
    log.write_text(
        "easgd service: Slurm job 80 on node1:1,node3:1\n"
        + "[0]<stdout>:step\n" * 50
        + "easgd service: Slurm job 81 on node1:1,node2:1\n"
        + "[0]<stdout>:step\n" * 5000
        + "Process 1 exit with status code 255.\n"
        "RuntimeError: Horovod detected that one or more processes exited with non-zero status, "
        "thus causing the job to be terminated. The first process to do so was:\n"
        "Process name: 1\nExit code: 255\n"
    )
    launched = Launched(
        7, Allocation({"slurm": 2}), "t", None, None, log, SlurmJob("81", state="FAILED")
    )
    failure = SlurmLauncher(ServiceSettings()).failure(launched)
    assert failure.hosts == {"node1": 1, "node2": 1}
    assert (failure.first.rank, failure.first.exit_code, failure.first.host) == (1, 255, "node2")
    assert failure.reason == "Process 1 exit with status code 255.; the batch job failed"


@pytest.mark.parametrize(
    "limit, expected",
    [  # the forms of sbatch --time, as sinfo shows a partition's MaxTime
        ("infinite", None),
        ("60", 60),
        ("30:00", 30),
        ("0:00:30", 1),
        ("1:00:00", 60),
        ("1-12", 2160),
        ("1-12:30", 2190),
        ("2-03:04:05", 3065),
    ],
)
def test_slurm_time_limits_read_as_whole_minutes(limit, expected):
    from service.launchers.slurm import minutes

    assert minutes(limit) == expected


def test_slurm_not_answering_is_no_refusal(tmp_path, monkeypatch):
    """A job is refused for what Slurm says (test_slurm_launcher.py, on the test cluster), never
    for a moment it does not answer: that one is queued, and its own sbatch says (a refusal
    would fail a queued job for good)."""
    from service.launchers.slurm import SlurmLauncher
    from service.settings import ServiceSettings

    launcher = SlurmLauncher(ServiceSettings())
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no sinfo: nothing answers
    assert launcher.placement_problem(launcher.settings, 4, time_limit=30) is None
    assert launcher.test_only(4, 0, {"node2"}) == ""
