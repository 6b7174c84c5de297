"""The REST API's edits of a run: PATCH /runs/{id} (tags and the note), POST /runs/{id}/archive
and /restore, DELETE /runs/{id}?files=true|false, and GET /runs/{id}/deletion, what that
DELETE would remove, to ask first.

The same conventions as the other routes (service.api): a bad body is a 422 in FastAPI's shape
naming the field, an unknown run a 404, a run still being written (or a directory not ours to
remove) a 409 saying what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from db.run_edits import MAX_TAG_CHANGES
from db.sql import KEY_PATTERN, RUN_ID_PATTERN
from db.store import Store
from db.text import MAX_TAG_VALUE, NOT_NOTE_TEXT, NOT_PRINTABLE, NOTE_TAG, check_tag_value
from service import formatting
from service.run_removal import plan_removal, remove_run


class RunPatch(BaseModel):
    """Tags to set (null removes one) and the note; a field left out is left as it is."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    tags: (
        Annotated[
            dict[
                Annotated[str, Field(pattern=KEY_PATTERN)],
                Annotated[str, Field(max_length=MAX_TAG_VALUE, pattern=f"^[^{NOT_PRINTABLE}]*$")]
                | None,
            ],
            Field(max_length=MAX_TAG_CHANGES, json_schema_extra={"additionalProperties": False}),
        ]
        | None
    ) = Field(
        None,
        description="key: value to set, key: null to remove; printable text on one line (the "
        "note, which may have lines, goes in `note`).",
    )
    note: (
        Annotated[str, Field(max_length=MAX_TAG_VALUE, pattern=f"^[^{NOT_NOTE_TEXT}]*$")] | None
    ) = Field(
        None,
        description=f"The run's note (the tag `{NOTE_TAG}`, which it overrides in `tags`): "
        "printable text, line breaks and tabs allowed; empty or null removes it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _note_in_tags(cls, data: Any) -> Any:
        # `tags.note` is the note: its rule (lines allowed) is the `note` field's.
        if isinstance(data, dict) and isinstance(data.get("tags"), dict):
            if NOTE_TAG in data["tags"]:
                tags = dict(data["tags"])
                note = tags.pop(NOTE_TAG)
                data = {**data, "tags": tags}
                data.setdefault("note", note)
        return data

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_text(cls, v: Any) -> Any:
        # The store's own rule and message; the patterns above state it in the document.
        if not isinstance(v, dict):
            return v
        return {
            k: check_tag_value(k, x) if isinstance(k, str) and isinstance(x, str) else x
            for k, x in v.items()
        }

    @field_validator("note", mode="before")
    @classmethod
    def _note_text(cls, v: Any) -> Any:
        return check_tag_value(NOTE_TAG, v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _something(self) -> RunPatch:
        if not self.model_fields_set:
            raise ValueError('nothing to change: send "tags", "note" or both')
        return self

    def changes(self) -> dict[str, str | None]:
        out: dict[str, str | None] = dict(self.tags or {})
        if "note" in self.model_fields_set:
            out[NOTE_TAG] = self.note or None
        return out


class _Records(BaseModel):
    run_id: str
    metric_points: int = Field(description="Metric values removed with the run.")
    events: int
    run_dir: str | None = Field(description="The directory the run recorded.")


class DeletionPlan(_Records):
    directory: str | None = Field(
        description="The directory a deletion with files would remove (null: none would be)."
    )
    bytes: int = Field(description="That directory's size.")
    message: str = Field(description="What a deletion would remove, in one line.")


class RunDeleted(_Records):
    files_removed: bool = Field(description="Whether that directory was removed.")
    message: str = Field(
        description="What was done, in one line; says so when the directory could not be removed."
    )


def add_routes(
    app: FastAPI,
    store: Store,
    runs_root: Path,
    message: Callable[[str], dict[str, Any]],
    body: dict[int, Any],
) -> None:
    no_run = {404: message("No run with this id.")}
    written = {
        **no_run,
        409: message("The run is still being written: cancel its job (or stop it) first."),
    }
    run_id_param = PathParam(pattern=RUN_ID_PATTERN, description="The run's id.")

    @app.patch("/runs/{run_id}", responses={**no_run, **body})
    def edit_run(req: RunPatch, run_id: str = run_id_param) -> dict[str, Any]:
        """Set or remove tags and set the note, in one transaction; returns the run."""
        return formatting.run_json(store.set_tags(run_id, req.changes()))

    @app.post("/runs/{run_id}/archive", responses=written)
    def archive_run(run_id: str = run_id_param) -> dict[str, Any]:
        """Hide the run from GET /runs (unless view=archived or all), keeping everything."""
        return formatting.run_json(store.archive_run(run_id))

    @app.post("/runs/{run_id}/restore", responses=no_run)
    def restore_run(run_id: str = run_id_param) -> dict[str, Any]:
        """List an archived run again."""
        return formatting.run_json(store.restore_run(run_id))

    refused = {
        **no_run,
        409: message(
            "The run is still being written, or its directory is not the run's own under "
            "the data directory's runs/ folder: nothing was deleted."
        ),
    }

    @app.get("/runs/{run_id}/deletion", response_model=DeletionPlan, responses=refused)
    def deletion_plan(
        run_id: str = run_id_param,
        files: bool = Query(False, description="With the run's directory."),
    ) -> DeletionPlan:
        """What DELETE /runs/{id} would remove, refused as it would be, with nothing changed:
        for a client to ask before it deletes."""
        plan = plan_removal(store, run_id, files, runs_root)
        return DeletionPlan(
            **asdict(plan.deletion),
            directory=None if plan.directory is None else str(plan.directory),
            bytes=plan.size,
            message=plan.preview(),
        )

    @app.delete("/runs/{run_id}", response_model=RunDeleted, responses=refused)
    def delete_run(
        run_id: str = run_id_param,
        files: bool = Query(False, description="Remove the run's directory too."),
    ) -> RunDeleted:
        """Delete the run's records in one transaction, then with `files` its directory."""
        removal = remove_run(store, run_id, files, runs_root)
        return RunDeleted(
            **asdict(removal.deletion),
            files_removed=removal.removed,
            message=removal.line(),
        )
