"""The store the service and the UI open: runs and the job queue on one engine.

The parts live in their own modules (`db.runs`, `db.jobs`, the search SQL in `db.search`, the
shared session code in `db.sql`); training opens `RunStore` alone.
"""

from __future__ import annotations

from db.jobs import JobStore
from db.runs import RunStore


class Store(RunStore, JobStore):
    pass
