"""time_tracking_entry_scopes without a foreign key to time_tracking_entries

The loader writes an entry and its links in one transaction and never deletes an entry,
so the constraint only guarded against hand-made changes, at a price: on PostgreSQL its
per-row check was a fifth of the server's work in a first sync (5.7 µs a link of 9.9).
A link left behind by an entry deleted by hand is harmless: every query that reads links
joins them to their entries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NAME = "fk_time_tracking_entry_scopes_entry_gid_time_tracking_entries"


def upgrade() -> None:
    with op.batch_alter_table("time_tracking_entry_scopes") as batch:
        batch.drop_constraint(NAME, type_="foreignkey")


def downgrade() -> None:
    # links whose entry is gone would fail the constraint
    op.execute("DELETE FROM time_tracking_entry_scopes WHERE entry_gid NOT IN "
               "(SELECT gid FROM time_tracking_entries)")
    with op.batch_alter_table("time_tracking_entry_scopes") as batch:
        batch.create_foreign_key(NAME, "time_tracking_entries", ["entry_gid"], ["gid"],
                                 ondelete="CASCADE")
