"""The Run page as MLflow users manage a run: its system metrics per rank, its note, archiving
and deletion, against a real SQLite store and run directory."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from db.settings import runs_dir
from db.store import Store
from tests.ui.pages import open_app, seed_system_run


def _seed(store: Store) -> None:
    seed_system_run(store, runs_dir() / "r-sys")


def _run_page(at: AppTest | None = None) -> AppTest:
    at = at or open_app()
    at.switch_page("views/run.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_system_tab_draws_each_ranks_cpu_and_memory(ui_store):
    _seed(ui_store)
    at = _run_page()
    charts = {c["y_label"]: c for c in (json.loads(b.proto.json) for b in at.get("bidi_component"))}
    assert {"cpu_percent", "memory_mb"} <= set(charts)
    memory = charts["memory_mb"]["series"]
    assert [s["label"] for s in memory] == ["rank 0", "rank 1"]
    assert memory[1]["x"] == [0, 10, 20] and memory[1]["y"] == [710.0] * 3


def test_a_note_is_saved_and_an_archived_run_leaves_the_runs_table(ui_store):
    _seed(ui_store)
    at = _run_page()
    at.text_area(key="run.note.r-sys").set_value("lr too high; rerun with 0.01").run()
    next(b for b in at.button if b.key == "run.note.save").click().run()
    assert ui_store.get_run("r-sys").tags["note"] == "lr too high; rerun with 0.01"
    assert "note saved" in [s.value for s in at.success]
    next(b for b in at.button if b.key == "run.archive").click().run()
    assert ui_store.get_run("r-sys").archived_at is not None
    assert ui_store.list_runs() == []  # the default view hides it
    at = _run_page(at)  # the Run page still shows it, marked
    assert "(archived)" in at.selectbox(key="run.id").format_func("r-sys")
    next(b for b in at.button if b.key == "run.restore").click().run()
    assert [r.id for r in ui_store.list_runs()] == ["r-sys"]


def test_delete_asks_first_then_removes_the_run_and_its_directory(ui_store):
    _seed(ui_store)
    run_dir = runs_dir() / "r-sys"
    at = _run_page()
    at.checkbox(key="run.delete.files").check().run()
    next(b for b in at.button if b.key == "run.delete").click().run()
    assert run_dir.is_dir() and ui_store.get_run("r-sys")  # only asked so far
    question = " ".join(str(m.value) for m in at.markdown)
    assert "run r-sys" in question and str(run_dir) in question
    next(b for b in at.button if b.key == "run.delete.confirm").click().run()
    assert not run_dir.exists() and ui_store.list_runs() == []
