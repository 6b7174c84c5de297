"""archived runs: the time a run was archived, null while it is active

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archived_at", sa.Float(), nullable=True))


def downgrade() -> None:
    # Not the batch "move and copy": on SQLite it drops `runs`, and with foreign keys on (the
    # engine turns them on) that deletes every param, tag, metric and event. SQLite 3.35 and later
    # drops a column in place.
    with op.batch_alter_table("runs", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("archived_at")
