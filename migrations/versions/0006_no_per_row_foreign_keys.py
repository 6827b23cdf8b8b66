"""No foreign keys on the tables a sync writes a row to per entry

`time_tracking_entry_scopes.entry_gid` → `time_tracking_entries` and
`sync_run_seen_entries.run_id` → `sync_runs`: the loader writes an entry and its links in
one transaction and never deletes an entry or a run, so the constraints only guarded
against hand-made changes, at a price: PostgreSQL checks each inserted row with a
trigger and a locking lookup, a fifth of its work in a first sync (COPY of a link: 9.9
µs with the key, 4.2 without) and the same again for each seen-mark of a re-sync. A link
left behind by an entry deleted by hand is harmless: every query that reads links joins
them to their entries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

from etl.store.migration_steps import batch_alter_table, drop_foreign_key_if_present

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LINKS_FK = "fk_time_tracking_entry_scopes_entry_gid_time_tracking_entries"
SEEN_FK = "fk_sync_run_seen_entries_run_id_sync_runs"


def upgrade() -> None:
    drop_foreign_key_if_present("time_tracking_entry_scopes", LINKS_FK)
    drop_foreign_key_if_present("sync_run_seen_entries", SEEN_FK)


def downgrade() -> None:
    # rows whose parent is gone would fail the constraints
    op.execute("DELETE FROM time_tracking_entry_scopes WHERE entry_gid NOT IN "
               "(SELECT gid FROM time_tracking_entries)")
    op.execute("DELETE FROM sync_run_seen_entries WHERE run_id NOT IN (SELECT id FROM sync_runs)")
    with batch_alter_table("time_tracking_entry_scopes") as batch:
        batch.create_foreign_key(LINKS_FK, "time_tracking_entries", ["entry_gid"], ["gid"],
                                 ondelete="CASCADE")
    with batch_alter_table("sync_run_seen_entries") as batch:
        batch.create_foreign_key(SEEN_FK, "sync_runs", ["run_id"], ["id"], ondelete="CASCADE")
