"""What people do to a run after it ran, as MLflow's users do: tags and a note, archive and
restore, delete.

A note is the tag `note` (MLflow keeps its note as the tag `mlflow.note.content`), so the filter
language finds it: `tags.note LIKE '%diverged%'`. An archived run keeps everything and is only
hidden from searches (`RunView`). A run still being written is never archived or deleted: its
writer would go on writing into a run nobody sees, or into none.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from db.entities import JobStatus, RunRecord, RunStatus
from db.errors import InvalidTransition, StoreError
from db.models import Job, LatestMetric, Metric, Param, Run, RunEvent, Tag
from db.runs import RunStore
from db.search import status_column
from db.sql import check_key
from db.text import NOTE_TAG, check_tag_value, short

MAX_TAG_CHANGES = 100


@dataclass
class RunDeletion:
    """What a deletion removed from the store (or would): the directory is the caller's."""

    run_id: str
    metric_points: int
    events: int
    run_dir: str | None


class RunEditStore(RunStore):
    def set_tags(self, run_id: str, tags: Mapping[str, str | None]) -> RunRecord:
        """Set each tag to its value, or remove it where the value is None, in one transaction
        (removing a tag the run does not have is no error)."""
        if not isinstance(tags, Mapping):
            raise StoreError(f"tags: a mapping of key to value (received: {short(tags)})")
        if len(tags) > MAX_TAG_CHANGES:
            raise StoreError(
                f"tags: at most {MAX_TAG_CHANGES} changes at once (received: {len(tags)})"
            )
        put: dict[str, str] = {}
        for key, value in tags.items():
            check_key(key, "tag key")
            if value is not None:
                put[key] = check_tag_value(key, value)
        gone = [k for k, v in tags.items() if v is None]
        with self._write() as s:
            self._require_run(s, run_id)
            if gone:
                s.execute(delete(Tag).where(Tag.run_id == run_id, Tag.key.in_(gone)))
            self._put_tags(s, run_id, put)
        return self.get_run(run_id)

    def set_note(self, run_id: str, note: str | None) -> RunRecord:
        """The run's note (the tag `note`); empty or None removes it."""
        return self.set_tags(run_id, {NOTE_TAG: note or None})

    def archive_run(self, run_id: str) -> RunRecord:
        """Hide a run from searches, keeping everything; archiving an archived run keeps its
        first time."""
        with self._write() as s:
            run = self._require_run(s, run_id)
            self._refuse_if_running(s, run, "archive")
            if run.archived_at is None:
                run.archived_at = time.time()
        return self.get_run(run_id)

    def restore_run(self, run_id: str) -> RunRecord:
        with self._write() as s:
            self._require_run(s, run_id).archived_at = None
        return self.get_run(run_id)

    def deletion(self, run_id: str) -> RunDeletion:
        """What `delete_run` would remove, refused as it would be (to ask before deleting)."""
        with self._read() as s:
            run = self._require_run(s, run_id)
            self._refuse_if_running(s, run, "delete")
            return self._deletion(s, run)

    def delete_run(self, run_id: str) -> RunDeletion:
        """Remove a run and everything recorded of it, in one transaction; its directory is
        left where it is."""
        with self._write() as s:
            run = self._require_run(s, run_id)
            if not self._is_sqlite:  # SQLite's writer holds the whole file already
                s.execute(select(Run.id).where(Run.id == run_id).with_for_update())
            self._refuse_if_running(s, run, "delete")
            gone = self._deletion(s, run)
            for model in (Metric, LatestMetric, Param, Tag, RunEvent):
                s.execute(delete(model).where(model.run_id == run_id))
            s.execute(delete(Run).where(Run.id == run_id))
        return gone

    def runs_in_directory(self, directory: str) -> list[str]:
        """The runs whose recorded directory is `directory` or lies inside it."""
        inside = directory.rstrip("/") + "/"
        with self._read() as s:
            stmt = select(Run.id).where(
                or_(Run.run_dir == directory, Run.run_dir.startswith(inside, autoescape=True))
            )
            return sorted(s.scalars(stmt))

    def _deletion(self, s: Session, run: Run) -> RunDeletion:
        def count(model) -> int:
            return s.scalar(select(func.count()).where(model.run_id == run.id)) or 0

        return RunDeletion(run.id, count(Metric), count(RunEvent), run.run_dir)

    def _refuse_if_running(self, s: Session, run: Run, action: str) -> None:
        """A run whose writer still beats, or whose job has not ended, is being written."""
        job = None if run.job_id is None else s.get(Job, run.job_id)
        if job is not None and not JobStatus(job.status).is_terminal():
            raise InvalidTransition(
                f"run {run.id!r} belongs to job {job.id}, which is {job.status}; cancel the job "
                f"first (`easgd jobs cancel {job.id}`), then {action} the run"
            )
        status = s.scalar(select(status_column(self.lost_after)).where(Run.id == run.id))
        if status == RunStatus.RUNNING.value:
            raise InvalidTransition(
                f"run {run.id!r} is running; stop it first (cancel its job, or stop its "
                f"horovodrun), then {action} it"
            )
