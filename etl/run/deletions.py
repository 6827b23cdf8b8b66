"""Deletion detection for one scope whose listing completed in full.

There is no deletion feed for time tracking entries: the only evidence is an entry that
a complete listing of a scope no longer shows. Each such candidate is confirmed with
`GET /time_tracking_entries/{gid}`: a 404 stamps `deleted_at` (the row stays), a 200
means the entry only left this scope, or was skipped because the data shifted between
two pages. Nothing is ever marked deleted without Asana's 404.

The run orders candidates (`load.deletion_candidates`), a few thousand at a time, that
the fetcher process (`etl.fetcher`) confirms side by side under the shared rate budget;
`apply_confirmations` writes the answers in the loader's batches, many to a transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import sqlalchemy as sa

from etl.config import Scope
from etl.asana.extract import still_in_scope
from etl.run.messages import Confirmed
from etl.store.dimensions import link_categories
from etl.store.links import mark_seen, unlink
from etl.store.load import UpsertCounts, insert_rejected, mark_deleted, upsert_entries
from etl.store.runs import PageCounts
from etl.transform import (
    RecordRejected,
    Rejection,
    RowValues,
    entry_gid,
    rejected_payload,
    row_values,
    to_row,
)

log = logging.getLogger(__name__)

def apply_confirmations(
    conn: sa.Connection, run_id: int, scope: Scope, answers: Sequence[Confirmed],
    now: dt.datetime,
) -> PageCounts:
    """Write what Asana said about a batch of `scope`'s candidates (the entry with the
    fields its listing returns, or None for a 404); returns what that changed."""
    gone = [answer.gid for answer in answers if answer.entry is None]
    deleted = mark_deleted(conn, gone, now)
    if gone:
        log.debug("scope %s: %d entries deleted in Asana", scope, deleted)
    rows: list[tuple[Scope, RowValues]] = []
    rejections: list[Rejection] = []
    seen: list[str] = []  # still listed by this scope: the pass skipped them as data shifted
    moved: list[str] = []
    for answer in answers:
        gid, listed = answer.gid, answer.entry
        if listed is None:
            continue
        # stored as a listing would store it, so that the next listing sees no difference
        try:
            row = to_row(listed)
        except RecordRejected as exc:
            rejections.append(Rejection(entry_gid(listed), str(exc), rejected_payload(listed)))
            seen.append(gid)
            continue
        rows.append((scope, row_values(row)))
        entry = listed if answer.task is None else {**listed, "task": answer.task}
        (seen if still_in_scope(scope, entry) else moved).append(gid)
    updated = upsert_entries(conn, rows, now).counts.get(scope, UpsertCounts()).updated
    carried = {a.gid: a.categories for a in answers
               if a.entry is not None and a.categories is not None}
    if carried:  # the links follow what the entry carries now, as a listing's do
        link_categories(conn, carried)
    insert_rejected(conn, run_id, scope, rejections, now)
    mark_seen(conn, run_id, scope, seen)
    unlink(conn, scope, moved)
    return PageCounts(deleted=deleted, updated=updated, rejected=len(rejections))
