"""a batch scheduler's own job: its name and id ("slurm 123"), and its state and reason

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheduler_job", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("scheduler_state", sa.Text(), nullable=True))


def downgrade() -> None:
    # In place, as 0004's downgrade and for the same reason.
    with op.batch_alter_table("jobs", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("scheduler_state")
        batch_op.drop_column("scheduler_job")
