"""The one horovodrun command line (training/launch/argv.py) that the service, the benchmarks and the
tests share: checked as argument lists, nothing is started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from training.launch.argv import horovodrun_argv
from training.schema.hosts import format_hosts

PROGRAM = [sys.executable, "-m", "training", "--config", "c.yaml"]


@pytest.fixture
def with_horovodrun(tmp_path, monkeypatch):
    """An interpreter with a horovodrun beside it."""
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    (python.parent / "horovodrun").touch()
    monkeypatch.setattr(sys, "executable", str(python))
    return [str(python), "-m", "training.launch.horovodrun"]


def test_local_ranks_are_pinned_to_loopback(with_horovodrun):
    argv = horovodrun_argv(2, PROGRAM)
    assert argv == [
        *with_horovodrun,
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
        "--network-interface",
        "lo",
        *PROGRAM,
    ]


def test_every_local_name_counts_as_local(with_horovodrun):
    argv = horovodrun_argv(3, PROGRAM, {"localhost": 1, "127.0.0.1": 2})
    assert argv[3:10] == [
        "-np",
        "3",
        "-H",
        "localhost:1,127.0.0.1:2",
        "--gloo",
        "--network-interface",
        "lo",
    ]


def test_remote_hosts_leave_the_interface_to_horovodrun(with_horovodrun):
    for hosts in ({"h1": 4, "h2": 2}, {"localhost": 2, "h2": 2}):
        argv = horovodrun_argv(6, PROGRAM, hosts)
        assert "--network-interface" not in argv
        assert argv == [
            *with_horovodrun,
            "-np",
            "6",
            "-H",
            format_hosts(hosts),
            "--gloo",
            *PROGRAM,
        ]


def test_loopback_pin_can_be_left_out(with_horovodrun):
    argv = horovodrun_argv(2, PROGRAM, pin_loopback=False)
    assert argv == [*with_horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", *PROGRAM]


def test_plain_is_the_horovodrun_beside_python_or_on_the_path(with_horovodrun, monkeypatch):
    beside = str(Path(sys.executable).parent / "horovodrun")
    assert horovodrun_argv(1, ["prog.py"], plain=True)[:2] == [beside, "-np"]
    monkeypatch.setattr(sys, "executable", str(Path(sys.executable).parent.parent / "python"))
    assert horovodrun_argv(1, ["prog.py"], plain=True)[0] == "horovodrun"


def test_argv_is_a_list_of_strings_never_a_shell_line(with_horovodrun):
    argv = horovodrun_argv(2, [sys.executable, str(Path("a dir") / "x; rm -rf y.py")])
    assert all(isinstance(a, str) for a in argv)
    assert argv[-1] == str(Path("a dir") / "x; rm -rf y.py")
