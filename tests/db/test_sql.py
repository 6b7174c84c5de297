"""What every part of the store shares (db/sql.py): the schema, and a store not set up."""

from __future__ import annotations

import pytest

from db.engine import head_revision
from db.errors import StoreNotInitialized
from db.store import Store


def test_init_creates_every_table_once(store):
    assert {
        "runs",
        "params",
        "tags",
        "metrics",
        "latest_metrics",
        "run_events",
        "jobs",
        "service_leases",
        "sweeps",
        "sweep_trials",
        "alembic_version",
    } <= set(store.table_names())
    assert store.init() == head_revision()  # idempotent
    store.check()


def test_uninitialized_store_is_refused_with_advice(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(StoreNotInitialized, match="easgd init"):
        s.check()
