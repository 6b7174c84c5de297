"""Tables for people: a stored value can never break a table's lines or reach the terminal as
an escape sequence."""

from __future__ import annotations

import os
import subprocess

import pytest

from db.store import Store
from service import formatting as fmt
from tests.support import BIN, run_record

HOSTILE = ["two\nlines", "nul\x00byte", "\x1b[31mred\x1b[0m", "cr\rreturn", "bidi\u202eevil"]


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("two\nlines", r"two\nlines"),
        ("nul\x00byte", r"nul\x00byte"),
        ("\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"),
        ("tab\there", r"tab\there"),
        ("bidi\u202eevil", r"bidi\u202eevil"),
        ("plain é 数据", "plain é 数据"),
    ],
)
def test_printable_escapes_control_characters_only(raw, shown):
    assert fmt.printable(raw) == shown


def test_table_keeps_one_line_per_row_whatever_the_values():
    out = fmt.table(["id", "name"], [[i, name] for i, name in enumerate(HOSTILE)])
    lines = out.split("\n")
    assert len(lines) == 2 + len(HOSTILE)
    assert not any(ch in out for ch in "\x00\x1b\r\u202e")
    assert lines[2].split() == ["0", r"two\nlines"]
    assert lines[4].split() == ["2", r"\x1b[31mred\x1b[0m"]


def test_runs_table_escapes_names():
    runs = [run_record(f"r{i}", name=name, source="cli") for i, name in enumerate(HOSTILE)]
    lines = fmt.runs_table(runs).split("\n")
    assert len(lines) == 2 + len(HOSTILE)
    assert lines[3].split()[:2] == ["r1", r"nul\x00byte"]


def test_runs_list_on_the_command_line_shows_each_run_on_one_line(easgd_home):
    env = {**os.environ, "EASGD_HOME": str(easgd_home)}
    assert subprocess.run([str(BIN / "easgd"), "init"], env=env, timeout=60).returncode == 0
    store = Store()
    for i, name in enumerate(HOSTILE):
        store.create_run(f"r{i}", params={}, name=name)
    out = subprocess.run(
        [str(BIN / "easgd"), "runs", "list"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    store, *lines = out.stdout.rstrip("\n").split("\n")
    assert store == f"store: sqlite:///{easgd_home / 'easgd.db'}"
    assert len(lines) == 2 + len(HOSTILE)
    assert "\x1b" not in out.stdout and "\x00" not in out.stdout and "\r" not in out.stdout
    assert any(r"two\nlines" in line for line in lines)


def test_runs_show_escapes_the_name_and_the_error(easgd_home):
    env = {**os.environ, "EASGD_HOME": str(easgd_home)}
    assert subprocess.run([str(BIN / "easgd"), "init"], env=env, timeout=60).returncode == 0
    store = Store()
    store.create_run("r0", params={}, name="red\x1b[31m\nname")
    store.finish_run("r0", "failed", error="boom\x1b[2J")
    out = subprocess.run(
        [str(BIN / "easgd"), "runs", "show", "r0"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    assert out.stdout.splitlines()[0] == r"run       r0  red\x1b[31m\nname"
    assert r"(boom\x1b[2J)" in out.stdout.splitlines()[1]
