"""The schema, declared once: every table the migrations create, and the column types
that make them the same on SQLite, PostgreSQL and MySQL/MariaDB.

`metadata` is what the migrations must agree with: a test runs alembic autogenerate
against it and fails on any difference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A UTC timestamp on every backend.

    PostgreSQL stores `timestamptz`; SQLite and MySQL have no time zones, so the value is
    stored as naive UTC (microseconds kept on MySQL) and read back as aware UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite through raw SQL
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def gid_type() -> sa.String:
    """Gids are strings of digits: text everywhere, never a number (they overflow floats)."""
    return sa.String(64)


#: JSON where the backend has it (JSONB on PostgreSQL so equality works), text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: Text of any length, for what Asana sends (names) and what quotes it (reasons,
#: payloads, errors): MySQL's TEXT holds 65,535 bytes, so LONGTEXT there (migration 0008).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")

# utf8mb4 for full Unicode; a binary collation so that a rename that only changes case
# or accents is still seen as a change (the upsert compares names with `<=>`).
MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

time_tracking_entries = sa.Table(
    "time_tracking_entries",
    metadata,
    sa.Column("gid", gid_type(), primary_key=True),
    sa.Column("duration_minutes", sa.Integer, nullable=False),
    sa.Column("entered_on", sa.Date, nullable=False),
    sa.Column("attributable_to_gid", gid_type(), nullable=True),
    sa.Column("attributable_to_name", LongText, nullable=True),
    sa.Column("created_by_gid", gid_type(), nullable=True),
    sa.Column("created_by_name", LongText, nullable=True),
    sa.Column("raw", JSONType, nullable=False),
    # digest of the canonical `raw`: an unchanged entry is recognised without reading
    # back and parsing its JSON (null: unknown, compare as changed)
    sa.Column("content_hash", sa.String(32), nullable=True),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    # the entry's details (`[details] entries`, migration 0009): null until read
    sa.Column("task_gid", gid_type(), nullable=True),
    sa.Column("task_name", LongText, nullable=True),
    sa.Column("billable_status", sa.String(32), nullable=True),
    sa.Column("approval_status", sa.String(16), nullable=True),
    sa.Column("description", LongText, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=True),
    sa.Column("details_fetched_at", UTCDateTime, nullable=True),
    # `content_hash` when the details were read: one that differs reads them again
    sa.Column("details_content_hash", sa.String(32), nullable=True),
    sa.Index(None, "entered_on"),
    sa.Index(None, "created_by_gid"),
    sa.Index(None, "attributable_to_gid"),
    sa.Index(None, "task_gid"),
    **MYSQL_TABLE_ARGS,
)

#: Which scope's listing saw which entry: deletion detection needs to know what a
#: complete listing of a scope should contain.
time_tracking_entry_scopes = sa.Table(
    "time_tracking_entry_scopes",
    metadata,
    sa.Column("scope_type", sa.String(16), primary_key=True),
    sa.Column("scope_gid", gid_type(), primary_key=True),
    # no foreign key: the loader writes an entry and its links together; the key's
    # per-row check was a fifth of PostgreSQL's work in a first sync (migration 0006)
    sa.Column("entry_gid", gid_type(), primary_key=True),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Index(None, "entry_gid"),
    **MYSQL_TABLE_ARGS,
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("command", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scopes_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("scopes_failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("entries_seen", sa.Integer, nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", LongText, nullable=True),
    sa.Column("hostname", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    # entry details (migration 0009): requests spent, entries left for the next run,
    # details changed, and what the list answered to their fields
    sa.Column("details_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("details_changed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("details_backlog", sa.Integer, nullable=True),
    sa.Column("details_list", sa.String(16), nullable=True),
    # requests by kind (migration 0010): the listings (with the preflight and deletion
    # confirmations), and the listings around the entries
    sa.Column("listings_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("categories_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("timesheets_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rates_requests", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "started_at"),
    **MYSQL_TABLE_ARGS,
)

sync_run_scopes = sa.Table(
    "sync_run_scopes",
    metadata,
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("sync_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("scope_type", sa.String(16), primary_key=True),
    sa.Column("scope_gid", gid_type(), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("entries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_after_seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("error", LongText, nullable=True),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
    # the days the run read of the scope (both null: all of them, a full read)
    sa.Column("window_since", sa.Date, nullable=True),
    sa.Column("window_until", sa.Date, nullable=True),
    # the date windows it was read in, and the requests that took
    sa.Column("listings", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "scope_type", "scope_gid", "status"),
    **MYSQL_TABLE_ARGS,
)

#: What the current pass of each scope has seen, so that deletion detection can ask the
#: database (not a set in memory) which linked entries the pass did not see. Rows live
#: only while their scope is being listed; bookkeeping, like the other sync_run* tables.
#: Append-only, no primary key (a gid seen twice is harmless: candidates are a set
#: difference), so a batch goes in with the backend's fastest bulk insert; UNLOGGED on
#: PostgreSQL (no WAL: after a server crash the run is abandoned anyway; set by
#: migration 0005, as table options are not compared by autogenerate).
sync_run_seen_entries = sa.Table(
    "sync_run_seen_entries",
    metadata,
    # no foreign key: its per-row check was most of a seen-mark's cost (migration 0006)
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("scope_type", sa.String(16), nullable=False),
    sa.Column("scope_gid", gid_type(), nullable=False),
    sa.Column("entry_gid", gid_type(), nullable=False),
    sa.Index(None, "run_id", "scope_type", "scope_gid"),
    **MYSQL_TABLE_ARGS,
)

rejected_records = sa.Table(
    "rejected_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("sync_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("scope_type", sa.String(16), nullable=False),
    sa.Column("scope_gid", gid_type(), nullable=False),
    sa.Column("entry_gid", gid_type(), nullable=True),
    sa.Column("reason", LongText, nullable=False),
    sa.Column("payload", LongText, nullable=False),
    sa.Column("rejected_at", UTCDateTime, nullable=False),
    sa.Index(None, "run_id"),
    **MYSQL_TABLE_ARGS,
)


# --- around the entries (`[details]` categories, timesheets, rates; migration 0010) -----

time_tracking_categories = sa.Table(
    "time_tracking_categories",
    metadata,
    sa.Column("gid", gid_type(), primary_key=True),
    # the workspace it belongs to: what "no longer listed" is judged within
    sa.Column("workspace_gid", gid_type(), nullable=False),
    sa.Column("name", LongText, nullable=True),
    sa.Column("color", sa.String(32), nullable=True),
    sa.Column("is_archived", sa.Boolean, nullable=False),
    # set when Asana lists it no more (archived or not): the row stays, as entries' do
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    **MYSQL_TABLE_ARGS,
)

#: Which categories an entry carries, as its last listing with categories showed them.
time_tracking_entry_categories = sa.Table(
    "time_tracking_entry_categories",
    metadata,
    sa.Column("entry_gid", gid_type(), primary_key=True),
    sa.Column("category_gid", gid_type(), primary_key=True),
    sa.Index(None, "category_gid"),
    **MYSQL_TABLE_ARGS,
)

#: One a user a week (Monday to Sunday, UTC): the week's approval, in upper case.
timesheet_approval_statuses = sa.Table(
    "timesheet_approval_statuses",
    metadata,
    sa.Column("gid", gid_type(), primary_key=True),
    sa.Column("user_gid", gid_type(), nullable=False),
    sa.Column("start_date", sa.Date, nullable=False),
    sa.Column("end_date", sa.Date, nullable=False),
    sa.Column("approval_status", sa.String(16), nullable=False),
    sa.Index(None, "user_gid", "start_date"),
    **MYSQL_TABLE_ARGS,
)

#: An hourly rate of a person (or a placeholder) on a project.
rates = sa.Table(
    "rates",
    metadata,
    sa.Column("gid", gid_type(), primary_key=True),
    sa.Column("parent_gid", gid_type(), nullable=False),
    sa.Column("resource_gid", gid_type(), nullable=False),
    sa.Column("rate", sa.Numeric(18, 6, asdecimal=False), nullable=True),
    sa.Column("currency_code", sa.String(8), nullable=True),
    sa.Index(None, "parent_gid", "resource_gid"),
    **MYSQL_TABLE_ARGS,
)
