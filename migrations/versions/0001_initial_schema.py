"""initial schema: entries, scope links, runs, per-scope run details, rejected records

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.store.migration_steps import create_index_if_missing, create_table_if_missing

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Self-contained on purpose: a migration must not change when etl/db.py does later.
# Each step checks first: on MySQL a killed run of it keeps what it made (see
# etl.migration_steps), and running it again completes it.
UTC = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
GID = sa.String(64)
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer, nullable=False, server_default="0")


def upgrade() -> None:
    create_table_if_missing(
        "time_tracking_entries",
        sa.Column("gid", GID, nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("entered_on", sa.Date, nullable=False),
        sa.Column("attributable_to_gid", GID, nullable=True),
        sa.Column("attributable_to_name", sa.Text, nullable=True),
        sa.Column("created_by_gid", GID, nullable=True),
        sa.Column("created_by_name", sa.Text, nullable=True),
        sa.Column("raw", JSON, nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("deleted_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("gid", name="pk_time_tracking_entries"),
        **MYSQL,
    )
    for column in ("entered_on", "created_by_gid", "attributable_to_gid"):
        create_index_if_missing(f"ix_time_tracking_entries_{column}", "time_tracking_entries",
                                [column])

    create_table_if_missing(
        "time_tracking_entry_scopes",
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope_gid", GID, nullable=False),
        sa.Column("entry_gid", GID, nullable=False),
        sa.Column("first_seen_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint(
            "scope_type", "scope_gid", "entry_gid", name="pk_time_tracking_entry_scopes"
        ),
        sa.ForeignKeyConstraint(
            ["entry_gid"],
            ["time_tracking_entries.gid"],
            name="fk_time_tracking_entry_scopes_entry_gid_time_tracking_entries",
            ondelete="CASCADE",
        ),
        **MYSQL,
    )
    create_index_if_missing(
        "ix_time_tracking_entry_scopes_entry_gid", "time_tracking_entry_scopes", ["entry_gid"]
    )

    create_table_if_missing(
        "sync_runs",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("command", sa.String(16), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _counter("scopes_total"),
        _counter("scopes_failed"),
        _counter("entries_seen"),
        _counter("inserted"),
        _counter("updated"),
        _counter("unchanged"),
        _counter("deleted"),
        _counter("rejected"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sync_runs"),
        **MYSQL,
    )
    create_index_if_missing("ix_sync_runs_started_at", "sync_runs", ["started_at"])

    create_table_if_missing(
        "sync_run_scopes",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope_gid", GID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        _counter("pages"),
        _counter("entries"),
        _counter("inserted"),
        _counter("updated"),
        _counter("unchanged"),
        _counter("rejected"),
        _counter("retries"),
        sa.Column("retry_after_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "scope_type", "scope_gid", name="pk_sync_run_scopes"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name="fk_sync_run_scopes_run_id_sync_runs",
            ondelete="CASCADE",
        ),
        **MYSQL,
    )
    create_index_if_missing(
        "ix_sync_run_scopes_scope_type_scope_gid_status",
        "sync_run_scopes",
        ["scope_type", "scope_gid", "status"],
    )

    create_table_if_missing(
        "rejected_records",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("scope_type", sa.String(16), nullable=False),
        sa.Column("scope_gid", GID, nullable=False),
        sa.Column("entry_gid", GID, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("rejected_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_records"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["sync_runs.id"],
            name="fk_rejected_records_run_id_sync_runs",
            ondelete="CASCADE",
        ),
        **MYSQL,
    )
    create_index_if_missing("ix_rejected_records_run_id", "rejected_records", ["run_id"])


def downgrade() -> None:
    op.drop_table("rejected_records")
    op.drop_table("sync_run_scopes")
    op.drop_table("sync_runs")
    op.drop_table("time_tracking_entry_scopes")
    op.drop_table("time_tracking_entries")
