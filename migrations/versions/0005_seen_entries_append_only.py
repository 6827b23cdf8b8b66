"""sync_run_seen_entries append-only: no primary key, an index by pass, UNLOGGED on PostgreSQL

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from etl.store.migration_steps import create_index_if_missing, drop_table_if_present

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GID = sa.String(64)
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _create(unique: bool) -> None:
    columns = [
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope_gid", GID, nullable=False),
        sa.Column("entry_gid", GID, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name="fk_sync_run_seen_entries_run_id_sync_runs",
            ondelete="CASCADE",
        ),
    ]
    if unique:
        columns.append(sa.PrimaryKeyConstraint(
            "run_id", "scope_type", "scope_gid", "entry_gid", name="pk_sync_run_seen_entries"))
    op.create_table("sync_run_seen_entries", *columns, **MYSQL)
    if not unique and op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sync_run_seen_entries SET UNLOGGED")


def upgrade() -> None:
    # its rows only matter while a run is in progress: recreate rather than alter (and
    # again, if a killed run of this on MySQL left it without its index)
    drop_table_if_present("sync_run_seen_entries")
    _create(unique=False)
    create_index_if_missing("ix_sync_run_seen_entries_run_id_scope_type_scope_gid",
                            "sync_run_seen_entries", ["run_id", "scope_type", "scope_gid"])


def downgrade() -> None:
    op.drop_table("sync_run_seen_entries")
    _create(unique=True)
