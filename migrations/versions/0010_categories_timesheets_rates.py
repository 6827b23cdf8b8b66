"""categories, weekly timesheet approvals and rates; views for what finance asks

What lives around the entries, each read with one cheap listing (`[details] categories`,
`timesheets`, `rates`): `time_tracking_categories` (every category of the workspace,
archived ones too, with its workspace; `deleted_at` once Asana lists it no more) and
`time_tracking_entry_categories` (which an entry carries); `timesheet_approval_statuses`
(one a user a week, upper case); `rates` (a person's hourly rate on a project).

`v_time_tracking_entries` gains the week's approval status where the entry's own is not
read, and `cost` (`duration_hours` × the rate of its project and person) with its
`currency_code`. New views: `v_monthly_hours_by_project` (hours, billable, non-billable,
approved, cost), `v_weekly_hours_by_user` (hours, approved, billable) and
`v_monthly_hours_by_category`. The same SQL on every backend. `sync_runs` counts a
run's requests by kind.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from etl.store.migration_steps import (
    add_column_if_missing,
    batch_alter_table,
    create_index_if_missing,
    create_table_if_missing,
    create_view_if_missing,
    drop_table_if_present,
    replace_view,
)

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Self-contained on purpose: a migration must not change when etl/store/schema.py does.
UTC = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")
GID = sa.String(64)
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

MONTH = {
    "postgresql": "to_char({0}, 'YYYY-MM')",
    "mysql": "DATE_FORMAT({0}, '%Y-%m')",
    "sqlite": "strftime('%Y-%m', {0})",
}
WEEK = {
    "postgresql": "CAST(date_trunc('week', {0}) AS DATE)",
    "mysql": "DATE_SUB({0}, INTERVAL WEEKDAY({0}) DAY)",
    "sqlite": "date({0}, '-' || ((CAST(strftime('%w', {0}) AS INTEGER) + 6) % 7) || ' days')",
}


def entries_view(dialect: str) -> str:
    week, month = WEEK[dialect].format("e.entered_on"), MONTH[dialect].format("e.entered_on")
    return f"""
        SELECT e.gid, e.duration_minutes, e.duration_minutes / 60.0 AS duration_hours,
               e.entered_on, {week} AS entered_week, {month} AS entered_month,
               e.attributable_to_gid, e.attributable_to_name, e.created_by_gid,
               e.created_by_name, e.task_gid, e.task_name, e.billable_status,
               COALESCE(e.approval_status, w.approval_status) AS approval_status,
               e.description, e.created_at,
               e.duration_minutes * r.rate / 60.0 AS cost, r.currency_code,
               e.first_seen_at, e.updated_at
        FROM time_tracking_entries e
        LEFT JOIN (SELECT user_gid, start_date, MAX(approval_status) AS approval_status
                   FROM timesheet_approval_statuses GROUP BY user_gid, start_date) w
               ON w.user_gid = e.created_by_gid AND w.start_date = {week}
        LEFT JOIN (SELECT parent_gid, resource_gid, MAX(rate) AS rate,
                          MAX(currency_code) AS currency_code
                   FROM rates GROUP BY parent_gid, resource_gid) r
               ON r.parent_gid = e.attributable_to_gid AND r.resource_gid = e.created_by_gid
        WHERE e.deleted_at IS NULL
        """


HOURS = "SUM(duration_hours)"


def hours_when(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN duration_hours ELSE 0 END)"


VIEWS = {
    "v_monthly_hours_by_project": f"""
        SELECT entered_month, attributable_to_gid, attributable_to_name, {HOURS} AS hours,
               {hours_when("billable_status = 'billable'")} AS billable_hours,
               {hours_when("billable_status = 'nonBillable'")} AS non_billable_hours,
               {hours_when("approval_status = 'APPROVED'")} AS approved_hours,
               SUM(cost) AS cost, MAX(currency_code) AS currency_code, COUNT(*) AS entries
        FROM v_time_tracking_entries
        GROUP BY entered_month, attributable_to_gid, attributable_to_name
        """,
    "v_weekly_hours_by_user": f"""
        SELECT entered_week, created_by_gid, created_by_name, {HOURS} AS hours,
               {hours_when("approval_status = 'APPROVED'")} AS approved_hours,
               {hours_when("billable_status = 'billable'")} AS billable_hours,
               COUNT(*) AS entries
        FROM v_time_tracking_entries
        GROUP BY entered_week, created_by_gid, created_by_name
        """,
    "v_monthly_hours_by_category": f"""
        SELECT v.entered_month, c.gid AS category_gid, c.name AS category_name,
               {HOURS.replace("duration_hours", "v.duration_hours")} AS hours,
               COUNT(*) AS entries
        FROM v_time_tracking_entries v
        JOIN time_tracking_entry_categories ec ON ec.entry_gid = v.gid
        JOIN time_tracking_categories c ON c.gid = ec.category_gid
        GROUP BY v.entered_month, c.gid, c.name
        """,
}


#: `sync_runs` counts a run's requests by kind (details' since 0009).
REQUEST_KINDS = ("listings", "categories", "timesheets", "rates")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    create_table_if_missing(
        "time_tracking_categories",
        sa.Column("gid", GID, nullable=False),
        sa.Column("workspace_gid", GID, nullable=False),
        sa.Column("name", LONG_TEXT, nullable=True),
        sa.Column("color", sa.String(32), nullable=True),
        sa.Column("is_archived", sa.Boolean, nullable=False),
        sa.Column("deleted_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("gid", name="pk_time_tracking_categories"),
        **MYSQL,
    )
    create_table_if_missing(
        "time_tracking_entry_categories",
        sa.Column("entry_gid", GID, nullable=False),
        sa.Column("category_gid", GID, nullable=False),
        sa.PrimaryKeyConstraint("entry_gid", "category_gid",
                                name="pk_time_tracking_entry_categories"),
        **MYSQL,
    )
    create_index_if_missing("ix_time_tracking_entry_categories_category_gid",
                            "time_tracking_entry_categories", ["category_gid"])
    create_table_if_missing(
        "timesheet_approval_statuses",
        sa.Column("gid", GID, nullable=False),
        sa.Column("user_gid", GID, nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date, nullable=False),
        sa.Column("approval_status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("gid", name="pk_timesheet_approval_statuses"),
        **MYSQL,
    )
    create_index_if_missing("ix_timesheet_approval_statuses_user_gid_start_date",
                            "timesheet_approval_statuses", ["user_gid", "start_date"])
    create_table_if_missing(
        "rates",
        sa.Column("gid", GID, nullable=False),
        sa.Column("parent_gid", GID, nullable=False),
        sa.Column("resource_gid", GID, nullable=False),
        sa.Column("rate", sa.Numeric(18, 6), nullable=True),
        sa.Column("currency_code", sa.String(8), nullable=True),
        sa.PrimaryKeyConstraint("gid", name="pk_rates"),
        **MYSQL,
    )
    create_index_if_missing("ix_rates_parent_gid_resource_gid", "rates",
                            ["parent_gid", "resource_gid"])
    for kind in REQUEST_KINDS:
        add_column_if_missing("sync_runs", sa.Column(f"{kind}_requests", sa.Integer,
                                                     nullable=False, server_default="0"))
    replace_view("v_time_tracking_entries", entries_view(dialect), having="cost")
    for name, select in VIEWS.items():
        create_view_if_missing(name, select)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.execute("DROP VIEW v_time_tracking_entries")
    dialect = op.get_bind().dialect.name
    week, month = WEEK[dialect].format("entered_on"), MONTH[dialect].format("entered_on")
    op.execute(f"""CREATE VIEW v_time_tracking_entries AS
        SELECT gid, duration_minutes, duration_minutes / 60.0 AS duration_hours, entered_on,
               {week} AS entered_week, {month} AS entered_month,
               attributable_to_gid, attributable_to_name, created_by_gid, created_by_name,
               task_gid, task_name, billable_status, approval_status, description, created_at,
               first_seen_at, updated_at
        FROM time_tracking_entries
        WHERE deleted_at IS NULL""")
    for table in ("rates", "timesheet_approval_statuses", "time_tracking_entry_categories",
                  "time_tracking_categories"):
        drop_table_if_present(table)
    with batch_alter_table("sync_runs") as batch:
        for kind in REQUEST_KINDS:
            batch.drop_column(f"{kind}_requests")
