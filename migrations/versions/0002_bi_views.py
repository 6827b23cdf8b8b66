"""views for BI tools: live entries with hours, daily hours by project and by user

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op

from etl.store.migration_steps import create_view_if_missing

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Calendar buckets differ per backend; computing them in the view lets one BI query
# run unchanged everywhere (week = the Monday it starts on).
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


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    create_view_if_missing(
        "v_time_tracking_entries",
        f"""
        SELECT gid, duration_minutes, duration_minutes / 60.0 AS duration_hours, entered_on,
               {WEEK[dialect]} AS entered_week, {MONTH[dialect]} AS entered_month,
               attributable_to_gid, attributable_to_name, created_by_gid, created_by_name,
               first_seen_at, updated_at
        FROM time_tracking_entries
        WHERE deleted_at IS NULL
        """
    )
    create_view_if_missing(
        "v_daily_hours_by_project",
        """
        SELECT entered_on, attributable_to_gid, attributable_to_name,
               SUM(duration_minutes) / 60.0 AS hours, COUNT(*) AS entries
        FROM time_tracking_entries
        WHERE deleted_at IS NULL
        GROUP BY entered_on, attributable_to_gid, attributable_to_name
        """
    )
    create_view_if_missing(
        "v_daily_hours_by_user",
        """
        SELECT entered_on, created_by_gid, created_by_name,
               SUM(duration_minutes) / 60.0 AS hours, COUNT(*) AS entries
        FROM time_tracking_entries
        WHERE deleted_at IS NULL
        GROUP BY entered_on, created_by_gid, created_by_name
        """
    )


def downgrade() -> None:
    for view in ("v_daily_hours_by_user", "v_daily_hours_by_project", "v_time_tracking_entries"):
        op.execute(f"DROP VIEW {view}")
