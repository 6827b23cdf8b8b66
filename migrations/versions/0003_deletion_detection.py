"""deletion detection: per-pass seen entries, deleted and restart counts per scope

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from etl.store.migration_steps import add_columns_if_missing, batch_alter_table, create_table_if_missing

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GID = sa.String(64)
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    add_columns_if_missing(
        "sync_run_scopes",
        sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
    )
    create_table_if_missing(
        "sync_run_seen_entries",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope_gid", GID, nullable=False),
        sa.Column("entry_gid", GID, nullable=False),
        sa.PrimaryKeyConstraint(
            "run_id", "scope_type", "scope_gid", "entry_gid", name="pk_sync_run_seen_entries"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name="fk_sync_run_seen_entries_run_id_sync_runs",
            ondelete="CASCADE",
        ),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("sync_run_seen_entries")
    with batch_alter_table("sync_run_scopes") as batch:
        batch.drop_column("restarts")
        batch.drop_column("deleted")
