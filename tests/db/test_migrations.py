"""Migrations keep the data: down to an earlier revision and up again, every row of the tables
that revision has is still there, on SQLite (whose foreign keys are on) and PostgreSQL alike."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from db import engine as engines
from db.store import Store

# The tables every revision has, and what the rows seeded below put in each.
KEPT = {
    "runs": 2,
    "params": 4,
    "tags": 3,
    "metrics": 10,
    "latest_metrics": 2,
    "run_events": 2,
    "jobs": 1,
}


def _seed(store: Store) -> None:
    job = store.create_job(config={"seed": 1}, workers=2, source="cli")
    for run_id in ("a", "b"):
        store.create_run(
            run_id,
            params={"optimizer.algorithm": "easgd", "seed": 1},
            job_id=job.id if run_id == "a" else None,
            tags={"team": "vision"} if run_id == "a" else {"team": "speech", "stage": "x"},
        )
        store.log_metrics(run_id, [("loss", s, float(s), 1.0 / (s + 1)) for s in range(5)])
        store.add_event(run_id, "evaluated", "center accuracy 0.5", 4)
        store.finish_run(run_id, "finished")


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in KEPT}


def _earlier_revisions() -> list[str]:
    """Every revision before the head, newest first (0001 at least)."""
    script = ScriptDirectory(str(engines.MIGRATIONS))
    return [r.revision for r in script.walk_revisions() if r.revision != engines.head_revision()]


@pytest.mark.parametrize("revision", _earlier_revisions())
def test_down_and_up_again_keeps_every_row(store_url, revision):
    s = Store(store_url)
    s.init()
    _seed(s)
    assert _counts(s) == KEPT
    engines.downgrade(s.engine, revision)
    assert engines.current_revision(s.engine) == revision
    assert _counts(s) == KEPT
    assert s.init() == engines.head_revision()
    assert _counts(s) == KEPT
    run = s.get_run("b")
    assert (run.tags, run.archived_at, run.metrics["loss"].step) == (
        {"team": "speech", "stage": "x"},
        None,
        4,
    )
    s.dispose()
