"""Deletion detection for one scope whose listing completed in full.

There is no deletion feed for time tracking entries: the only evidence is an entry that
a complete listing of a scope no longer shows. Each such candidate is confirmed with
`GET /time_tracking_entries/{gid}`: a 404 stamps `deleted_at` (the row stays), a 200
means the entry only left this scope, or was skipped because the data shifted between
two pages. Nothing is ever marked deleted without Asana's 404.

`iter_confirmations` does the reading (in a worker thread); `apply_confirmation` the
writing (in the loader's transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from etl import runs
from etl.asana import AsanaClient, CallStats
from etl.config import DateWindow, Scope
from etl.extract import fetch_entry, still_in_scope
from etl.load import (
    Rejection,
    deletion_candidates,
    insert_rejected,
    mark_deleted,
    mark_seen,
    unlink,
    upsert_entries,
)
from etl.runs import PageCounts
from etl.transform import RecordRejected, entry_gid, rejected_payload, to_row

log = logging.getLogger(__name__)

BATCH = 200


def iter_confirmations(
    engine: sa.Engine, client: AsanaClient, run_id: int, scope: Scope, window: DateWindow,
    stats: CallStats | None = None,
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(gid, the entry as Asana has it now, or None if Asana answers 404) for every entry
    linked to `scope` that this pass did not see.

    Raises:
        AsanaError: a confirmation failed.
    """
    after = None
    while True:
        with engine.connect() as conn:
            gids = deletion_candidates(conn, run_id, scope, window, BATCH, after)
        if not gids:
            return
        for gid in gids:
            yield gid, fetch_entry(client, gid, stats)
        after = gids[-1]


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
    upserted = upsert_entries(conn, [(scope, row)], now)[scope]
    if in_scope:
        # still listed by this scope: the pass skipped it because data shifted between pages
        mark_seen(conn, run_id, scope, [gid])
    else:
        unlink(conn, scope, gid)
    return PageCounts(updated=upserted.updated)
