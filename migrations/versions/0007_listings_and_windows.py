"""sync_run_scopes: each scope's window, listings and requests

A run may read a scope in several date windows (listings) and only part of its days
(`sync --recent`, `backfill --since/--until`): `window_since`/`window_until` record what
it read (both null: the scope in full, which is what freshness of a full read counts),
`listings` the windows it was read in, `requests` what that cost at Asana.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa

from etl.store.migration_steps import add_column_if_missing, batch_alter_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("window_since", "window_until", "listings", "requests")


def upgrade() -> None:
    # plain ADD COLUMN on every backend (nullable, or with a default): no table copy
    add_column_if_missing("sync_run_scopes", sa.Column("window_since", sa.Date, nullable=True))
    add_column_if_missing("sync_run_scopes", sa.Column("window_until", sa.Date, nullable=True))
    add_column_if_missing("sync_run_scopes", sa.Column("listings", sa.Integer, nullable=False,
                                                       server_default="0"))
    add_column_if_missing("sync_run_scopes", sa.Column("requests", sa.Integer, nullable=False,
                                                       server_default="0"))


def downgrade() -> None:
    with batch_alter_table("sync_run_scopes") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
