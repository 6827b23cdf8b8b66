"""MySQL/MariaDB: names, reasons, payloads and errors in LONGTEXT

A TEXT column holds 65,535 bytes on MySQL: a longer name (Asana sets no limit) could not
be stored (strict mode, the default, refuses it with "Data too long for column";
without it, the name would be cut short). LONGTEXT holds more than any request can
carry. Only MySQL changes: `text` on PostgreSQL and `TEXT` on SQLite have no such
limit. The views that read these columns need nothing: MySQL resolves a view's column
types when it is queried.

MariaDB changes a column's type by copying the table (ALGORITHM=COPY): on a large
`time_tracking_entries` this takes a while, once, with writes to it blocked.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from etl.store.migration_steps import mysql_retype_text_columns

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHARSET, COLLATION = "utf8mb4", "utf8mb4_bin"

#: table → {column: nullable}: every text column whose text comes from Asana, or from
#: an error that may quote it
COLUMNS = {
    "time_tracking_entries": {"attributable_to_name": True, "created_by_name": True},
    "rejected_records": {"reason": False, "payload": False},
    "sync_runs": {"error": True},
    "sync_run_scopes": {"error": True},
}


def _retype(type_: TypeEngine) -> None:
    if op.get_bind().dialect.name != "mysql":
        return
    for table, columns in COLUMNS.items():
        mysql_retype_text_columns(
            table, {name: (type_, nullable) for name, nullable in columns.items()},
            CHARSET, COLLATION)


def upgrade() -> None:
    _retype(mysql.LONGTEXT())


def downgrade() -> None:
    # in strict mode (the default) MySQL refuses to cut a longer value short
    _retype(mysql.TEXT())
