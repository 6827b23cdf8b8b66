"""Deletion detection for one scope whose listing completed in full.

There is no deletion feed for time tracking entries: the only evidence is an entry that
a complete listing of a scope no longer shows. Each such candidate is confirmed with
`GET /time_tracking_entries/{gid}`: a 404 stamps `deleted_at` (the row stays), a 200
means the entry only left this scope, or was skipped because the data shifted between
two pages. Nothing is ever marked deleted without Asana's 404.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from etl import runs
from etl.asana import AsanaClient
from etl.config import DateWindow, Scope
from etl.extract import fetch_entry, still_in_scope
from etl.load import (
    Rejection,
    deletion_candidates,
    forget_seen,
    insert_rejected,
    mark_deleted,
    mark_seen,
    unlink,
    upsert_entries,
)
from etl.runs import PageCounts
from etl.transform import RecordRejected, entry_gid, rejected_payload, to_row

log = logging.getLogger(__name__)

BATCH = 100


def detect_deletions(
    engine: sa.Engine, client: AsanaClient, run_id: int, scope: Scope, window: DateWindow
) -> PageCounts:
    """Confirm every linked entry this pass did not see; returns what that changed.

    Raises:
        AsanaError: a confirmation failed; what was confirmed before it stays committed.
    """
    total = PageCounts()
    while True:
        with engine.connect() as conn:
            gids = deletion_candidates(conn, run_id, scope, window, BATCH)
        if not gids:
            break
        for gid in gids:
            entry = fetch_entry(client, gid)
            with engine.begin() as conn:
                counts = _apply(conn, run_id, scope, gid, entry)
                runs.record_page(conn, run_id, scope, counts, pages=0)
            total.add(counts)
    with engine.begin() as conn:
        forget_seen(conn, run_id, scope)
    if total.deleted or total.updated:
        log.info("scope %s: %d deleted, %d changed outside the listing", scope, total.deleted,
                 total.updated)
    return total


def _apply(
    conn: sa.Connection, run_id: int, scope: Scope, gid: str, entry: dict[str, Any] | None
) -> PageCounts:
    now = runs.utcnow()
    if entry is None:
        deleted = mark_deleted(conn, gid, now)
        log.debug("scope %s: entry %s deleted in Asana", scope, gid)
        return PageCounts(deleted=int(deleted))
    in_scope = still_in_scope(scope, entry)
    # the listing does not carry `task`: store what a listing would, so that the next
    # listing does not see a difference
    listed = {k: v for k, v in entry.items() if k != "task"}
    try:
        row = to_row(listed)
    except RecordRejected as exc:
        insert_rejected(conn, run_id, scope, [Rejection(entry_gid(listed), str(exc),
                                                        rejected_payload(listed))], now)
        mark_seen(conn, run_id, scope, [gid])
        return PageCounts(rejected=1)
    upserted = upsert_entries(conn, [row], now)
    if in_scope:
        # still listed by this scope: the pass skipped it because data shifted between pages
        mark_seen(conn, run_id, scope, [gid])
    else:
        unlink(conn, scope, gid)
    return PageCounts(updated=upserted.updated)
