"""A deletion with files is crash-safe (service/run_removal.py): the directory is moved aside
before the records go and back when they cannot go, and what a crash left aside is finished
when the service next starts, on a real SQLite store and the real app."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from db.errors import StoreError
from db.settings import runs_dir
from db.store import Store
from service.api import create_app
from service.run_removal import DELETING, remove_run
from service.settings import ServiceSettings

TOKEN = "0123456789abcdef"


def _run(store: Store, run_id: str) -> Path:
    d = runs_dir() / run_id
    (d / "checkpoints").mkdir(parents=True)
    (d / "checkpoints" / "meta.json").write_text("{}")
    store.create_run(run_id, params={}, run_dir=str(d))
    store.log_metrics(run_id, [("loss", s, float(s), 1.0) for s in range(3)])
    store.finish_run(run_id, "finished")
    return d


def _start_service(home: Path) -> TestClient:
    settings = ServiceSettings(
        hosts={"localhost": 2}, db_url=f"sqlite:///{home / 'easgd.db'}", data_dirs=[home]
    )
    return TestClient(create_app(settings, start_supervisor=False))


def test_records_that_cannot_go_leave_the_directory_where_it_was(store, monkeypatch):
    d = _run(store, "r1")
    seen: list[Path] = []

    def failing_delete(run_id: str):
        seen.extend(runs_dir().glob(f"{DELETING}r1-*"))
        raise StoreError("the store is read-only")

    monkeypatch.setattr(store, "delete_run", failing_delete)
    with pytest.raises(StoreError, match="read-only"):
        remove_run(store, "r1", True, runs_dir())
    assert len(seen) == 1, "the directory was not moved aside before the records were deleted"
    assert (d / "checkpoints" / "meta.json").is_file()
    assert sorted(p.name for p in runs_dir().iterdir()) == ["r1"]
    assert store.get_run("r1").metrics["loss"].step == 2


def test_a_deletion_leaves_nothing_aside(store):
    d = _run(store, "r1")
    removal = remove_run(store, "r1", True, runs_dir())
    assert removal.removed and removal.aside is not None and removal.aside.parent == runs_dir()
    assert not d.exists() and list(runs_dir().iterdir()) == []


def test_the_next_start_removes_what_a_deletion_left_after_the_records_went(
    store, easgd_home, capsys
):
    d = _run(store, "r1")
    _run(store, "kept")
    store.delete_run("r1")
    aside = runs_dir() / f"{DELETING}r1-{TOKEN}"
    d.rename(aside)  # where a crash between the records and the files leaves it
    unrelated = runs_dir() / f"{DELETING}notes"
    unrelated.mkdir()
    with _start_service(easgd_home) as client:
        assert [r["id"] for r in client.get("/runs").json()] == ["kept"]
    out = capsys.readouterr().out
    assert (
        f"easgd service: run r1 was deleted: removed what was left of its directory, {aside} "
        "(2 B)\n"
    ) in out
    assert sorted(p.name for p in runs_dir().iterdir()) == [unrelated.name, "kept"]


def test_the_next_start_moves_back_a_directory_whose_records_never_went(store, easgd_home, capsys):
    d = _run(store, "r1")
    aside = runs_dir() / f"{DELETING}r1-{TOKEN}"
    d.rename(aside)  # where a crash between the move and the records leaves it
    with _start_service(easgd_home) as client:
        assert client.get("/runs/r1").json()["run_dir"] == str(d)
    assert (
        f"easgd service: run r1: its deletion stopped before its records went; its directory "
        f"is back at {d}\n"
    ) in capsys.readouterr().out
    assert (d / "checkpoints" / "meta.json").is_file() and not aside.exists()


def test_a_directory_aside_is_left_when_its_place_is_taken(store, easgd_home, capsys):
    d = _run(store, "r1")
    aside = runs_dir() / f"{DELETING}r1-{TOKEN}"
    d.rename(aside)
    d.mkdir()
    with _start_service(easgd_home):
        pass
    assert (
        f"easgd service: run r1: its deletion stopped before its records went, and {d} is "
        f"taken; its files are in {aside}: move them where you want them\n"
    ) in capsys.readouterr().out
    assert (aside / "checkpoints" / "meta.json").is_file() and d.is_dir()
