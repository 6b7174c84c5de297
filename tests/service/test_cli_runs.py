"""`easgd init` and `easgd runs ...` as a user types them, against a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import update

from db.models import Run
from db.store import Store
from tests.support import BIN


def easgd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "easgd"), *args], capture_output=True, text=True, env=os.environ, timeout=60
    )


@pytest.fixture
def seeded(store):
    """Two finished runs in a store made in this process, as `easgd init` makes it (its own test
    runs the command): a CLI start less for each test."""
    s = store
    for run_id, algo, acc in (("r-eam", "eamsgd", 0.96), ("r-sync", "sync", 0.93)):
        s.create_run(
            run_id,
            params={"optimizer.algorithm": algo, "optimizer.tau": 10},
            workers=2,
            name=run_id,
            total_steps=100,
        )
        s.log_metrics(
            run_id,
            [
                ("center_accuracy", 50, 5.0, acc - 0.1),
                ("center_accuracy", 100, 10.0, acc),
                ("train_loss", 100, 10.0, 0.1),
            ],
        )
        s.add_event(run_id, "evaluated", f"center accuracy {acc}", 100)
        s.finish_run(run_id, "finished")
    return s


def test_init_reports_where_and_is_repeatable(easgd_home):
    first = easgd("init")
    assert first.returncode == 0 and str(easgd_home / "easgd.db") in first.stdout
    assert easgd("init").returncode == 0


def test_commands_before_init_say_what_to_do(easgd_home):
    out = easgd("runs", "list")
    assert out.returncode == 1 and "easgd init" in out.stderr


def test_list_and_empty_state(easgd_home):
    easgd("init")
    empty = easgd("runs", "list")
    assert empty.returncode == 0 and "python -m training" in empty.stdout


def test_query_json_table_csv(seeded):
    q = "params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95"
    js = easgd("runs", "query", q, "--format", "json")
    assert js.returncode == 0, js.stderr
    (run,) = json.loads(js.stdout)
    assert run["id"] == "r-eam" and run["metrics"]["center_accuracy"]["value"] == 0.96
    assert run["params"]["optimizer.tau"] == "10"
    table = easgd(
        "runs", "query", "metrics.center_accuracy > 0", "--order-by", "metrics.center_accuracy ASC"
    )
    store, *lines = table.stdout.splitlines()
    assert store == f"store: sqlite:///{seeded.engine.url.database}"
    assert lines[0].split()[:3] == ["id", "name", "status"]
    assert lines[2].startswith("r-sync") and lines[3].startswith("r-eam")
    rows = list(csv.DictReader(io.StringIO(easgd("runs", "list", "--format", "csv").stdout)))
    assert {r["id"] for r in rows} == {"r-eam", "r-sync"}
    assert "metrics.center_accuracy" in rows[0]


def test_show_and_metrics(seeded):
    shown = easgd("runs", "show", "r-eam")
    assert shown.returncode == 0
    assert "center_accuracy" in shown.stdout and "optimizer.algorithm" in shown.stdout
    assert "evaluated" in shown.stdout
    hist = list(
        csv.DictReader(
            io.StringIO(easgd("runs", "metrics", "r-eam", "--key", "center_accuracy").stdout)
        )
    )
    assert [(int(r["step"]), float(r["value"])) for r in hist] == [(50, 0.86), (100, 0.96)]
    js = json.loads(easgd("runs", "metrics", "r-eam", "--format", "json").stdout)
    assert len(js) == 3


@pytest.mark.parametrize(
    "bad, phrase",
    [
        ("status = 'x'; DROP TABLE runs", "unexpected character ';'"),
        ("(status = 'finished'", "unbalanced '('"),
        ("nonsense = 1", "unknown field 'nonsense'"),
    ],
)
def test_bad_filters_exit_2_with_position(seeded, bad, phrase):
    out = easgd("runs", "query", bad)
    assert out.returncode == 2
    assert phrase in out.stderr and "position" in out.stderr
    assert len(json.loads(easgd("runs", "list", "--format", "json").stdout)) == 2


def test_unknown_run(seeded):
    out = easgd("runs", "show", "nope")
    assert out.returncode == 2 and "no run 'nope'" in out.stderr


def test_validate(tmp_path, easgd_home):
    good = easgd("validate", "configs/lenet-mnist5k-eamsgd.yaml", "--set", "optimizer.tau=4")
    assert good.returncode == 0 and "tau: 4" in good.stdout
    bad = easgd("validate", "configs/lenet-mnist5k-eamsgd.yaml", "--set", "optimizer.beta=2")
    assert bad.returncode == 2 and "optimizer.beta" in bad.stderr and "received: 2" in bad.stderr


# ---------------------------------------------------------------------- tags, notes, archive, delete
def easgd_on_terminal(*args: str, answer: str) -> tuple[int, str]:
    """`easgd` with a terminal for stdin, stdout and stderr, answering its question with
    `answer` once asked: the exit code and everything the terminal showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "easgd"), *args], stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    shown, answered = b"", False
    while True:
        if not select.select([leader], [], [], 60)[0]:
            proc.kill()
            raise AssertionError(f"easgd said nothing for 60 s after: {shown!r}")
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
        if not answered and shown.endswith(b"[y/N] "):
            os.write(leader, answer.encode())
            answered = True
    os.close(leader)
    return proc.wait(timeout=60), shown.decode().replace("\r\n", "\n")


def _with_directory(seeded: Store, run_id: str) -> Path:
    d = Path(os.environ["EASGD_HOME"]) / "runs" / run_id
    (d / "checkpoints").mkdir(parents=True)
    (d / "metrics.jsonl").write_text('{"step": 1}\n' * 50)
    with seeded.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(run_dir=str(d)))
    return d


def test_tags_are_set_removed_shown_and_queried(seeded):
    out = easgd("runs", "tag", "r-eam", "team=vision", "stage=tuned", "--remove", "absent")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "run r-eam: tags set team, stage; removed absent\n"
    assert easgd("runs", "tag", "r-eam", "--remove", "stage").stdout == (
        "run r-eam: tags removed stage\n"
    )
    found = json.loads(easgd("runs", "query", "tags.team = 'vision'", "--format", "json").stdout)
    assert [r["id"] for r in found] == ["r-eam"] and found[0]["tags"] == {"team": "vision"}
    shown = easgd("runs", "show", "r-eam").stdout
    assert "\ntags\n" in shown and "team  vision" in shown


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["r-eam", "team"], "tag: KEY=VALUE, e.g. team=vision (received: 'team')"),
        (["r-eam", "a=1", "--remove", "a"], "tag: 'a' is both set and removed; choose one"),
        (["r-eam"], "tag: give KEY=VALUE to set a tag, or --remove KEY to remove one"),
        (["r-eam", "bad key=1"], "tag key: letters, digits"),
        (["r-eam", "k=\x1b[2J"], "tag 'k': character U+001B at position 0 is not printable"),
        (["r-eam", "k=" + "x" * 5001], "at most 5000 characters; shorten it"),
        (["nope", "k=v"], "no run 'nope'"),
    ],
)
def test_bad_tags_are_one_line_and_change_nothing(seeded, args, phrase):
    out = easgd("runs", "tag", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and phrase in out.stderr, out.stderr
    assert seeded.get_run("r-eam").tags == {}


def test_the_note_is_set_shown_found_and_removed(seeded):
    out = easgd("runs", "note", "r-sync", "diverged at step 40\nretry with tau 4")
    assert out.returncode == 0 and out.stdout == "run r-sync: note set (36 characters)\n"
    shown = easgd("runs", "show", "r-sync").stdout
    assert "\nnote\n  diverged at step 40\n  retry with tau 4\n" in shown
    found = easgd("runs", "query", "tags.note LIKE '%diverged%'", "--format", "json")
    assert [r["id"] for r in json.loads(found.stdout)] == ["r-sync"]
    assert easgd("runs", "note", "r-sync", "").stdout == "run r-sync: note removed\n"
    assert seeded.get_run("r-sync").tags == {}


@pytest.mark.parametrize("args", [["-0.5 after warmup"], ["--", "-0.5 after warmup"]])
def test_a_note_may_start_with_a_dash(seeded, args):
    out = easgd("runs", "note", "r-sync", *args)
    assert out.returncode == 0, out.stderr
    assert seeded.get_run("r-sync").tags == {"note": "-0.5 after warmup"}


@pytest.mark.parametrize(
    "args, received",
    [([], "0 arguments: []"), (["lr", "too high"], "2 arguments: ['lr', 'too high']")],
)
def test_a_note_is_one_argument(seeded, args, received):
    out = easgd("runs", "note", "r-sync", *args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        "easgd: note: the text as one argument, quoted, e.g. easgd runs note RUN_ID 'lr too "
        f"high' ('' removes the note; received {received})\n"
    )
    assert seeded.get_run("r-sync").tags == {}


def test_the_note_help_is_still_help(seeded):
    out = easgd("runs", "note", "r-sync", "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: easgd runs note [-h] run_id text")
    assert seeded.get_run("r-sync").tags == {}


@pytest.mark.parametrize("command", [["list"], ["query", "params.optimizer.tau = 10"]])
def test_an_empty_list_says_when_archived_runs_would_match(seeded, command):
    for run_id in ("r-eam", "r-sync"):
        seeded.archive_run(run_id)
    out = easgd("runs", *command)
    assert out.returncode == 0 and out.stdout.split("\n", 1)[1] == (
        "no active runs match, but archived ones do: add --view archived (or --view all) to "
        "list them\n"
    )
    other = easgd("runs", "query", "params.optimizer.tau = 11")
    assert other.stdout.splitlines()[1].startswith("no runs match. Start one with: horovodrun")


def test_archived_runs_are_hidden_until_restored(seeded):
    out = easgd("runs", "archive", "r-eam")
    assert out.returncode == 0 and out.stdout.startswith("archived run r-eam: hidden from")
    listed = json.loads(easgd("runs", "list", "--format", "json").stdout)
    assert [r["id"] for r in listed] == ["r-sync"]
    table = easgd("runs", "list", "--view", "archived").stdout.splitlines()[1:]  # after the store
    assert len(table) == 3 and table[2].split()[:4] == ["r-eam", "r-eam", "finished", "(archived)"]
    queried = easgd(
        "runs", "query", "metrics.center_accuracy > 0", "--view", "all", "--format", "json"
    )
    assert {r["id"] for r in json.loads(queried.stdout)} == {"r-eam", "r-sync"}
    assert "archived  " in easgd("runs", "show", "r-eam").stdout
    assert easgd("runs", "restore", "r-eam").stdout == "restored run r-eam: listed again\n"
    assert len(json.loads(easgd("runs", "list", "--format", "json").stdout)) == 2
    bad = easgd("runs", "list", "--view", "deleted")
    assert bad.returncode == 2 and "invalid choice: 'deleted'" in bad.stderr


@pytest.mark.parametrize("command", [["archive"], ["delete", "--yes"]])
def test_a_running_run_is_refused_with_what_to_do(seeded, command):
    seeded.create_run("live", params={})
    out = easgd("runs", command[0], "live", *command[1:])
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        "easgd: run 'live' is running; stop it first (cancel its job, or stop its horovodrun), "
        f"then {command[0]} it\n"
    )
    assert seeded.get_run("live").archived_at is None


def test_delete_without_a_terminal_needs_yes(seeded):
    d = _with_directory(seeded, "r-eam")
    out = subprocess.run(
        [str(BIN / "easgd"), "runs", "delete", "r-eam", "--files"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        "easgd: deleting run r-eam asks for confirmation, and stdin is not a terminal; add --yes "
        "to delete without asking\n"
    )
    assert seeded.get_run("r-eam").id == "r-eam" and d.is_dir()
    kept = easgd("runs", "delete", "r-eam", "--yes")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == (
        f"deleted run r-eam (3 metric points, 1 event); its directory {d} is kept (delete with "
        "files to remove it)\n"
    )
    assert d.is_dir() and [r.id for r in seeded.list_runs()] == ["r-sync"]


def test_delete_asks_on_a_terminal_what_it_will_remove(seeded):
    d = _with_directory(seeded, "r-sync")
    size = (d / "metrics.jsonl").stat().st_size
    code, said = easgd_on_terminal("runs", "delete", "r-sync", "--files", answer="n\n")
    question = (
        "This deletes run r-sync: its record, 3 metric points and 1 event, and its directory "
        f"{d} ({size} B).\nDelete? [y/N] "
    )
    assert code == 1 and said == question + "n\nkept run r-sync: nothing deleted\n", said
    assert seeded.get_run("r-sync").id == "r-sync" and d.is_dir()
    code, said = easgd_on_terminal("runs", "delete", "r-sync", "--files", answer="y\n")
    assert code == 0, said
    assert said == question + (
        f"y\ndeleted run r-sync (3 metric points, 1 event) and its directory {d} ({size} B)\n"
    )
    assert not d.exists() and (d.parent / "..").resolve() == Path(os.environ["EASGD_HOME"])
    assert [r.id for r in seeded.list_runs()] == ["r-eam"]
