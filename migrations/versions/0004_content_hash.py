"""content_hash on entries: recognise unchanged entries without parsing their JSON

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from etl.store.migration_steps import add_column_if_missing

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: rows loaded before this revision have none; the next sync compares them
    # as changed and fills it in
    add_column_if_missing("time_tracking_entries",
                          sa.Column("content_hash", sa.String(32), nullable=True))


def downgrade() -> None:
    # Not a batch (copy-and-rename) operation on SQLite: the views on this table would
    # break. SQLite 3.35+ drops a column in place.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE time_tracking_entries DROP COLUMN content_hash")
    else:
        op.drop_column("time_tracking_entries", "content_hash")
