"""The Run page as MLflow users manage a run: its system metrics per rank, its note, archiving
and deletion, against a real SQLite store and run directory; the changes through a real job
service, whose refusals the page shows as they are."""

from __future__ import annotations

import json

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.settings import runs_dir
from db.store import Store
from tests.ui.pages import open_app, seed_system_run
from ui.navigation import PATHS


def _seed(store: Store) -> None:
    seed_system_run(store, runs_dir() / "r-sys")


def _run_page(at: AppTest | None = None) -> AppTest:
    at = at or open_app()
    at.switch_page(PATHS["run"]).run()
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


@pytest.mark.service
def test_a_note_is_saved_and_an_archived_run_leaves_the_runs_table(ui_store, ui_service):
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


@pytest.mark.service
def test_delete_asks_first_then_removes_the_run_and_its_directory(ui_store, ui_service):
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


def _press(at: AppTest, key: str) -> AppTest:
    next(b for b in at.button if b.key == key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.service
def test_the_services_refusals_and_its_absence_are_one_line_each(ui_store, ui_service, monkeypatch):
    ui_store.create_run("live", name="live", params={})  # beating: still being written
    at = _run_page()
    assert at.selectbox(key="run.id").value == "live"
    _press(at, "run.archive")
    assert [e.value for e in at.error] == [
        "run 'live' is running; stop it first (cancel its job, or stop its horovodrun), "
        "then archive it"
    ]
    assert ui_store.get_run("live").archived_at is None
    at.text_area(key="run.note.live").set_value("bell\x07").run()
    _press(at, "run.note.save")
    assert [e.value for e in at.error] == [
        "note: character U+0007 at position 4 is not printable text; remove it "
        "(received: 'bell\\x07')"
    ]
    _press(at, "run.delete")  # the dialog asks the service what a deletion would remove
    assert "run 'live' is running" in " ".join(e.value for e in at.error)
    assert not [b for b in at.button if b.key == "run.delete.confirm"]

    monkeypatch.setenv("EASGD_API_TOKEN", "not-the-token")
    st.cache_resource.clear()  # the client the app made holds the right one
    at = _run_page()
    _press(at, "run.archive")
    assert [e.value for e in at.error] == [
        "missing or wrong token: send Authorization: Bearer TOKEN"
    ]

    ui_service.stop()
    at = _run_page()
    at.text_area(key="run.note.live").set_value("kept?").run()
    _press(at, "run.note.save")
    assert [e.value for e in at.error] == [
        f"The job service does not answer at {ui_service.url}: start it with `easgd up` (or "
        "`easgd serve`), or point the UI at it with EASGD_API_URL."
    ]
    assert "note" not in ui_store.get_run("live").tags
