"""The client's run edits against a real `easgd serve`, started on a store left at the revision
before archiving existed: the service upgrades it, then tags, notes, archives, says what a
deletion would remove and deletes."""

from __future__ import annotations

import httpx
import pytest

from db import engine as engines
from service.client import ApiError, Client
from tests.support import Service, store_of

pytestmark = pytest.mark.service


def test_the_client_edits_archives_and_deletes_runs_of_a_real_service(tmp_path):
    home = tmp_path / "home"
    store = store_of(home)
    engines.upgrade(store.engine, "0003")
    svc = Service(home).start()
    try:
        assert engines.current_revision(store.engine) == engines.head_revision()
        run_dir = home / "runs" / "r1"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
        store.create_run("r1", params={}, run_dir=str(run_dir))
        store.log_metrics("r1", [("loss", 1, 0.1, 0.5)])
        store.finish_run("r1", "finished")
        store.create_run("live", params={})
        client = Client(svc.url)

        assert client.set_tags("r1", {"team": "vision", "none": None})["tags"] == {"team": "vision"}
        assert client.set_note("r1", "lr too high")["tags"]["note"] == "lr too high"
        assert client.archive_run("r1")["archived_at"] is not None
        listed = httpx.get(f"{svc.url}/runs", timeout=30).json()
        assert [r["id"] for r in listed] == ["live"]
        assert client.restore_run("r1")["archived_at"] is None
        with pytest.raises(ApiError, match="409: run 'live' is running; stop it first") as exc:
            client.archive_run("live")
        assert exc.value.exit_code == 2
        plan = client.deletion("r1", files=True)
        assert plan["directory"] == str(run_dir.resolve()) and plan["bytes"] == 12
        assert plan["message"] == (
            f"run r1: its record, 1 metric point and 0 events, and its directory "
            f"{run_dir.resolve()} (12 B)"
        )
        assert client.deletion("r1")["directory"] is None and run_dir.is_dir()
        with pytest.raises(ApiError, match="409: run 'live' is running; stop it first"):
            client.deletion("live")
        gone = client.delete_run("r1", files=True)
        assert gone["files_removed"] is True and gone["metric_points"] == 1
        assert gone["message"].startswith("deleted run r1 (1 metric point, 0 events)")
        assert not run_dir.exists()
        with pytest.raises(ApiError, match="404: no run 'r1'"):
            client.delete_run("r1")
    finally:
        svc.stop()
        store.dispose()
