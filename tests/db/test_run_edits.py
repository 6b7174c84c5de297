"""Tags, notes, archiving and deleting runs (db/run_edits.py), on SQLite and PostgreSQL alike,
and the upgrade of a store left at the revision before archiving existed."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update

from db import engine as engines
from db.errors import InvalidTransition, NotFound, StoreError
from db.models import Run
from db.store import Store


def _finished(store: Store, run_id: str, **kw) -> None:
    store.create_run(run_id, params={"optimizer.algorithm": "easgd"}, **kw)
    store.log_metrics(run_id, [("loss", s, float(s), 1.0 / (s + 1)) for s in range(5)])
    store.add_event(run_id, "evaluated", "center accuracy 0.5", 4)
    store.finish_run(run_id, "finished")


def _silence(store: Store, run_id: str) -> None:
    """The run's writer died long ago: it reads `lost`."""
    with store.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run_id).values(heartbeat_time=1.0))


def test_tags_are_set_and_removed_together(store):
    _finished(store, "r1", tags={"team": "vision", "old": "x"})
    run = store.set_tags("r1", {"stage": "tuned", "team": "speech", "old": None, "absent": None})
    assert run.tags == {"team": "speech", "stage": "tuned"}
    assert [r.id for r in store.search_runs("tags.stage = 'tuned'")] == ["r1"]
    assert store.search_runs("tags.old = 'x'") == []


@pytest.mark.parametrize(
    "tags, phrase",
    [
        ({"ok": "v", "bad key": "v"}, r"tag key: .*received: 'bad key'"),
        ({"ok": "v", "k\n": "v"}, r"tag key: .*received: 'k\\n'"),
        ({"ok": "v", "k": 3}, r"tag 'k': a string, or null to remove it \(received: 3\)"),
        ({"ok": "v", "k": "x" * 5001}, r"at most 5000 characters; .*received: 5001 characters"),
        ({"ok": "v", "k": "\x1b[31mred"}, r"U\+001B at position 0 is not printable"),
        (
            {"ok": "v", "k": "two\nlines"},
            r"tag 'k': character U\+000A at position 3 is not printable text; remove it "
            r"\(received: 'two\\nlines'\); only the note \(the tag 'note'\) has lines",
        ),
        ({"ok": "v", "k": "caf\udce9"}, r"U\+DCE9 at position 3"),
        ({f"k{i}": "v" for i in range(101)}, r"at most 100 changes at once \(received: 101\)"),
        ({"ok": "v", "note": "nul\x00byte"}, r"note: character U\+0000 at position 3"),
    ],
)
def test_a_bad_tag_is_refused_and_nothing_changes(store, tags, phrase):
    _finished(store, "r1", tags={"team": "vision"})
    with pytest.raises(StoreError, match=phrase):
        store.set_tags("r1", tags)
    assert store.get_run("r1").tags == {"team": "vision"}


def test_the_note_is_the_tag_note_and_keeps_its_lines(store):
    _finished(store, "r1")
    _finished(store, "r2")
    run = store.set_note("r1", "diverged after lr warmup\r\nretry with\ttau 4")
    assert run.tags == {"note": "diverged after lr warmup\nretry with\ttau 4"}
    assert store.set_tags("r2", {"note": "a\rb"}).tags == {"note": "a\nb"}
    with pytest.raises(StoreError, match="only the note"):  # every other tag is one line
        store.set_tags("r2", {"why": "a\rb"})
    assert [r.id for r in store.search_runs("tags.note LIKE '%diverged%'")] == ["r1"]
    assert store.set_note("r1", "").tags == {}
    with pytest.raises(NotFound, match="no run 'nope'"):
        store.set_note("nope", "x")


def test_archived_runs_are_kept_and_hidden_until_restored(store):
    for run_id in ("a", "b"):
        _finished(store, run_id)
    archived = store.archive_run("a")
    assert archived.archived_at is not None and archived.metrics["loss"].step == 4
    assert [r.id for r in store.list_runs()] == ["b"]
    assert [r.id for r in store.search_runs("status = 'finished'")] == ["b"]
    assert [r.id for r in store.search_runs(None, view="archived")] == ["a"]
    assert {r.id for r in store.list_runs(view="all")} == {"a", "b"}
    assert store.get_run("a").archived_at == archived.archived_at
    assert set(store.get_runs(["a", "b"])) == {"a", "b"}  # an explicit id still reads it
    assert store.archive_run("a").archived_at == archived.archived_at  # archived once
    assert store.restore_run("a").archived_at is None
    assert {r.id for r in store.list_runs()} == {"a", "b"}
    with pytest.raises(StoreError, match=r"view: one of active, archived, all \(received: 'x'\)"):
        store.list_runs(view="x")


def test_deleting_removes_everything_recorded_and_reports_it(store):
    _finished(store, "r1", run_dir="/data/runs/r1", tags={"t": "v"})
    _finished(store, "keep")
    preview = store.deletion("r1")
    gone = store.delete_run("r1")
    assert gone == preview
    assert (gone.run_id, gone.metric_points, gone.events, gone.run_dir) == (
        "r1",
        5,
        1,
        "/data/runs/r1",
    )
    with pytest.raises(NotFound):
        store.get_run("r1")
    with store.engine.connect() as conn:
        for table in ("params", "tags", "metrics", "latest_metrics", "run_events"):
            left = conn.execute(text(f"SELECT count(*) FROM {table} WHERE run_id = 'r1'"))
            assert left.scalar() == 0, table
    assert store.get_run("keep").metrics["loss"].step == 4
    with pytest.raises(NotFound):
        store.delete_run("r1")


@pytest.mark.parametrize("action", ["archive_run", "delete_run", "deletion"])
def test_a_running_run_is_neither_archived_nor_deleted(store, action):
    store.create_run("r1", params={})
    with pytest.raises(InvalidTransition, match=r"run 'r1' is running; stop it first"):
        getattr(store, action)("r1")
    _silence(store, "r1")  # lost: its writer is gone, nothing will write to it
    getattr(store, action)("r1")


@pytest.mark.parametrize("job_status", ["queued", "running"])
def test_a_run_whose_job_has_not_ended_says_cancel_the_job(store, job_status):
    job = store.create_job(config={"seed": 1}, workers=2, source="cli")
    if job_status == "running":
        store.transition_job(job.id, "running")
    _finished(store, "r1", job_id=job.id)
    _silence(store, "r1")
    for action in (store.archive_run, store.delete_run):
        with pytest.raises(
            InvalidTransition,
            match=rf"job {job.id}, which is {job_status}; cancel the job first "
            rf"\(`easgd jobs cancel {job.id}`\)",
        ):
            action("r1")
    assert store.get_run("r1").archived_at is None
    store.transition_job(job.id, "cancelled")
    assert store.archive_run("r1").archived_at is not None
    assert store.delete_run("r1").metric_points == 5


def test_a_store_at_the_sweeps_revision_is_upgraded_and_keeps_its_runs(store_url):
    s = Store(store_url)
    engines.upgrade(s.engine, "0003")
    with s.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, name, status, source, workers, hosts, start_time, "
                "last_step) VALUES ('old', 'before', 'finished', 'shell', 2, 1, 1.0, 10)"
            )
        )
        conn.execute(text("INSERT INTO tags (run_id, key, value) VALUES ('old', 't', 'v')"))
    assert engines.current_revision(s.engine) == "0003"
    assert s.init() == engines.head_revision()
    s.check()
    run = s.get_run("old")
    assert (run.name, run.archived_at, run.tags) == ("before", None, {"t": "v"})
    assert [r.id for r in s.list_runs()] == ["old"]
    assert s.archive_run("old").archived_at is not None
    s.dispose()


def test_runs_in_a_directory_are_found_by_their_recorded_path(store):
    _finished(store, "a", run_dir="/d/runs/a")
    _finished(store, "inner", run_dir="/d/runs/a/inner")
    _finished(store, "sibling", run_dir="/d/runs/ab")
    _finished(store, "percent", run_dir="/d/runs/%")
    assert store.runs_in_directory("/d/runs/a") == ["a", "inner"]
    assert store.runs_in_directory("/d/runs/%") == ["percent"]
    assert store.runs_in_directory("/d/runs/_") == []
