"""The store the service and the UI open: runs, the job queue and sweeps on one engine.

The parts live in their own modules (`db.runs`, `db.jobs`, `db.sweeps`, the search SQL in
`db.search`, the shared session code in `db.sql`); training opens `RunStore` alone.
"""

from __future__ import annotations

from db.jobs import JobStore
from db.runs import RunStore
from db.sweeps import SweepStore


class Store(RunStore, JobStore, SweepStore):
    pass
