"""The store the service and the UI open: runs, the job queue and sweeps on one engine.

The parts live in their own modules (`db.runs`, `db.jobs`, `db.sweeps`, the search SQL in
`db.search`, the shared session code in `db.sql`, tags, notes, archiving and deleting in
`db.run_edits`); training opens `RunStore` alone.
"""

from __future__ import annotations

from db.jobs import JobStore
from db.run_edits import RunEditStore
from db.sweeps import SweepStore


class Store(RunEditStore, JobStore, SweepStore):
    pass
