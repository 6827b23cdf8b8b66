"""entry details: task, billable and approval status, description, created_at

What the list of entries does not return, read with `[details] entries = true` (one
request an entry, under a budget): `task_gid`/`task_name`, `billable_status`,
`approval_status`, `description`, `created_at` (Asana's), and `details_fetched_at` (when
the details stored were read). `details_content_hash` is the entry's `content_hash` when
they were: an entry whose listed content changed since is read again. All nullable:
null until read, or where the workspace's plan does not give them.

`sync_runs` gains what a run spent on details (`details_requests`), what it left for
the next (`details_backlog`), how many it changed (`details_changed`) and what the list
answered to the details' fields (`details_list`: returned, ignored, refused, unknown).

`v_time_tracking_entries` gains the details' columns.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from etl.store.migration_steps import (
    add_column_if_missing,
    batch_alter_table,
    create_index_if_missing,
    replace_view,
)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Self-contained on purpose: a migration must not change when etl/store/schema.py does.
UTC = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")

ENTRY_COLUMNS = (
    ("task_gid", sa.String(64)),
    ("task_name", LONG_TEXT),
    ("billable_status", sa.String(32)),
    ("approval_status", sa.String(16)),
    ("description", LONG_TEXT),
    ("created_at", UTC),
    ("details_fetched_at", UTC),
    ("details_content_hash", sa.String(32)),
)
RUN_COUNTERS = ("details_requests", "details_changed")

MONTH = {
    "postgresql": "to_char(entered_on, 'YYYY-MM')",
    "mysql": "DATE_FORMAT(entered_on, '%Y-%m')",
    "sqlite": "strftime('%Y-%m', entered_on)",
}
WEEK = {
    "postgresql": "CAST(date_trunc('week', entered_on) AS DATE)",
    "mysql": "DATE_SUB(entered_on, INTERVAL WEEKDAY(entered_on) DAY)",
    "sqlite": "date(entered_on, '-' || ((CAST(strftime('%w', entered_on) AS INTEGER) + 6) % 7) || ' days')",
}


def entries_view(dialect: str, details: bool) -> str:
    extra = ("task_gid, task_name, billable_status, approval_status, description, created_at, "
             if details else "")
    return f"""
        SELECT gid, duration_minutes, duration_minutes / 60.0 AS duration_hours, entered_on,
               {WEEK[dialect]} AS entered_week, {MONTH[dialect]} AS entered_month,
               attributable_to_gid, attributable_to_name, created_by_gid, created_by_name,
               {extra}first_seen_at, updated_at
        FROM time_tracking_entries
        WHERE deleted_at IS NULL
        """


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # plain ADD COLUMN on every backend (nullable, or with a default): no table copy
    for name, type_ in ENTRY_COLUMNS:
        add_column_if_missing("time_tracking_entries", sa.Column(name, type_, nullable=True))
    create_index_if_missing("ix_time_tracking_entries_task_gid", "time_tracking_entries",
                            ["task_gid"])
    for name in RUN_COUNTERS:
        add_column_if_missing("sync_runs", sa.Column(name, sa.Integer, nullable=False,
                                                     server_default="0"))
    add_column_if_missing("sync_runs", sa.Column("details_backlog", sa.Integer, nullable=True))
    add_column_if_missing("sync_runs", sa.Column("details_list", sa.String(16), nullable=True))
    replace_view("v_time_tracking_entries", entries_view(dialect, details=True),
                 having="task_gid")


#: The views over `time_tracking_entries` as 0002 made them, but the first: SQLite cannot
#: copy a table (batch mode) that a view reads, so a downgrade drops and remakes them.
DAILY_VIEWS = {
    "v_daily_hours_by_project": """
        SELECT entered_on, attributable_to_gid, attributable_to_name,
               SUM(duration_minutes) / 60.0 AS hours, COUNT(*) AS entries
        FROM time_tracking_entries
        WHERE deleted_at IS NULL
        GROUP BY entered_on, attributable_to_gid, attributable_to_name
        """,
    "v_daily_hours_by_user": """
        SELECT entered_on, created_by_gid, created_by_name,
               SUM(duration_minutes) / 60.0 AS hours, COUNT(*) AS entries
        FROM time_tracking_entries
        WHERE deleted_at IS NULL
        GROUP BY entered_on, created_by_gid, created_by_name
        """,
}


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in ("v_time_tracking_entries", *DAILY_VIEWS):
        op.execute(f"DROP VIEW {view}")
    op.drop_index("ix_time_tracking_entries_task_gid", "time_tracking_entries")
    with batch_alter_table("time_tracking_entries") as batch:
        for name, _ in ENTRY_COLUMNS:
            batch.drop_column(name)
    with batch_alter_table("sync_runs") as batch:
        for name in (*RUN_COUNTERS, "details_backlog", "details_list"):
            batch.drop_column(name)
    op.execute(f"CREATE VIEW v_time_tracking_entries AS {entries_view(dialect, details=False)}")
    for view, select in DAILY_VIEWS.items():
        op.execute(f"CREATE VIEW {view} AS {select}")
