"""Deletion detection for one scope whose listing completed in full.

There is no deletion feed for time tracking entries: the only evidence is an entry that
a complete listing of a scope no longer shows. Each such candidate is confirmed with
`GET /time_tracking_entries/{gid}`: a 404 stamps `deleted_at` (the row stays), a 200
means the entry only left this scope, or was skipped because the data shifted between
two pages. Nothing is ever marked deleted without Asana's 404.

The run orders candidates (`load.deletion_candidates`) confirmed by the fetcher process
(`etl.fetcher`); `apply_confirmation` writes each answer in the loader's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from etl import runs
from etl.config import Scope
from etl.extract import still_in_scope
from etl.load import (
    Rejection,
    insert_rejected,
    mark_deleted,
    mark_seen,
    unlink,
    upsert_entries,
)
from etl.runs import PageCounts
from etl.transform import RecordRejected, entry_gid, rejected_payload, row_values, to_row

log = logging.getLogger(__name__)

def apply_confirmation(
    conn: sa.Connection, run_id: int, scope: Scope, gid: str, entry: dict[str, Any] | None
) -> PageCounts:
    """Write what Asana said about one candidate; returns what that changed."""
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
        rejection = Rejection(entry_gid(listed), str(exc), rejected_payload(listed))
        insert_rejected(conn, run_id, scope, [rejection], now)
        mark_seen(conn, run_id, scope, [gid])
        return PageCounts(rejected=1)
    upserted = upsert_entries(conn, [(scope, row_values(row))], now).counts[scope]
    if in_scope:
        # still listed by this scope: the pass skipped it because data shifted between pages
        mark_seen(conn, run_id, scope, [gid])
    else:
        unlink(conn, scope, gid)
    return PageCounts(updated=upserted.updated)
