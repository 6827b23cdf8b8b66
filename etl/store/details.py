"""Entries' details in the database: writing what a read found (only what changed), and
which entries a run reads next.

An entry's details are read once (`details_fetched_at` set), and again when its listed
content changed since (`details_content_hash` no longer its `content_hash`): together
those unread are the backlog. Those that can still change (entered lately, in a week
not approved) are the refresh set, read again on every run. A read that finds the
details unchanged writes nothing, so a night over unchanged data writes no entry row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Sequence
from typing import Any

import sqlalchemy as sa

from etl.config import DateWindow, Scope
from etl.store.bulk import IN_CHUNK, chunks
from etl.store.schema import (
    time_tracking_entries,
    time_tracking_entry_scopes,
    timesheet_approval_statuses,
)
from etl.transform import DETAIL_COLUMNS, DetailValues

entries = time_tracking_entries
links = time_tracking_entry_scopes

#: Entries, as the details see them.
_STORED = [entries.c[name] for name in DETAIL_COLUMNS]


def store_details(conn: sa.Connection, read: Sequence[tuple[str, DetailValues]],
                  now: dt.datetime, unreadable: Sequence[str] = ()) -> int:
    """Write what a read of these entries' details found: an entry whose details changed
    gets them (and `updated_at` moves); one never read, or read before its listed content
    changed, is marked read; one read before with the same details is not touched.
    `unreadable` entries (refused, or details no database can store) are marked read as
    they are, so that they leave the backlog until their content changes. Entries gone
    from the table (or marked deleted) are left alone. Returns how many entries' details
    changed."""
    latest = dict(read)  # an entry read twice: its last answer
    changed: list[dict[str, Any]] = []
    marked: list[dict[str, Any]] = [{"g": gid, "fetched": now} for gid in unreadable
                                    if gid not in latest]
    query = sa.select(entries.c.gid, *_STORED, entries.c.details_fetched_at,
                      entries.c.details_content_hash, entries.c.content_hash)
    for chunk in chunks(sorted(latest), IN_CHUNK):
        for row in conn.execute(query.where(entries.c.gid.in_(chunk),
                                            entries.c.deleted_at.is_(None))):
            values = latest[row.gid]
            if tuple(row[1:1 + len(DETAIL_COLUMNS)]) != values:
                changed.append({"g": row.gid, "fetched": now,
                                **{f"v_{name}": v for name, v in zip(DETAIL_COLUMNS, values)}})
            elif row.details_fetched_at is None or row.details_content_hash != row.content_hash:
                marked.append({"g": row.gid, "fetched": now})
    if changed:
        conn.execute(_CHANGED, changed)
    if marked:
        conn.execute(_MARKED, marked)
    return len(changed)


_WHERE = entries.c.gid == sa.bindparam("g")
_CHANGED = sa.update(entries).where(_WHERE).values(
    **{name: sa.bindparam(f"v_{name}", type_=entries.c[name].type) for name in DETAIL_COLUMNS},
    details_fetched_at=sa.bindparam("fetched", type_=entries.c.details_fetched_at.type),
    updated_at=sa.bindparam("fetched", type_=entries.c.updated_at.type),
    details_content_hash=entries.c.content_hash,
)
_MARKED = sa.update(entries).where(_WHERE).values(
    details_fetched_at=sa.bindparam("fetched", type_=entries.c.details_fetched_at.type),
    details_content_hash=entries.c.content_hash,
)


def _linked_to(scopes: Sequence[Scope]) -> sa.ColumnElement[bool]:
    """The entry is linked to one of `scopes` (whose locks the run holds)."""
    return sa.exists().where(
        links.c.entry_gid == entries.c.gid,
        sa.tuple_(links.c.scope_type, links.c.scope_gid).in_([(s.kind, s.gid) for s in scopes]),
    )


def _unread() -> sa.ColumnElement[bool]:
    return sa.or_(entries.c.details_fetched_at.is_(None),
                  entries.c.details_content_hash.is_distinct_from(entries.c.content_hash))


def backlog(conn: sa.Connection, scopes: Sequence[Scope], limit: int,
            exclude: Container[str] = frozenset(), before: dt.date | None = None) -> list[str]:
    """Up to `limit` live entries of `scopes` (entered before `before`, if given) whose
    details are to be read, newest first (but those in `exclude`: this run could not
    read them, or has)."""
    query = (sa.select(entries.c.gid)
             .where(entries.c.deleted_at.is_(None), _unread(), _linked_to(scopes))
             .order_by(entries.c.entered_on.desc(), entries.c.gid.desc()))
    if before is not None:
        query = query.where(entries.c.entered_on < before)
    found: list[str] = []
    offset = 0
    while len(found) < limit:  # past the excluded, which stay unread
        page = list(conn.execute(query.limit(limit).offset(offset)).scalars())
        found += [gid for gid in page if gid not in exclude]
        if len(page) < limit:
            break
        offset += limit
    return found[:limit]


def refresh_set(conn: sa.Connection, scopes: Sequence[Scope], since: dt.date, limit: int,
                after: str | None = None, read_before: dt.datetime | None = None,
                before: dt.date | None = None) -> list[str]:
    """Up to `limit` live entries of `scopes` whose details were read (before
    `read_before`: not by this run) and can still change: entered on `since` or later,
    not approved; or of any day, whose week's timesheet (as last read) says another
    approval than they do (approved late, or recalled). Entered before `before`, if
    given; in gid order after `after`."""
    recent = sa.and_(entries.c.entered_on >= since,
                     sa.or_(entries.c.approval_status.is_(None),
                            entries.c.approval_status != "APPROVED"))
    query = (sa.select(entries.c.gid)
             .where(entries.c.deleted_at.is_(None), sa.not_(_unread()),
                    sa.or_(recent, _week_says_otherwise()), _linked_to(scopes))
             .order_by(entries.c.gid).limit(limit))
    if after is not None:
        query = query.where(entries.c.gid > after)
    if read_before is not None:
        query = query.where(entries.c.details_fetched_at < read_before)
    if before is not None:
        query = query.where(entries.c.entered_on < before)
    return list(conn.execute(query).scalars())


def _week_says_otherwise() -> sa.ColumnElement[bool]:
    """The entry's user's timesheet of its week holds another approval than the entry
    (which has one: an entry read without, a 403 say, would be read again every run)."""
    week = timesheet_approval_statuses
    return sa.exists().where(
        entries.c.approval_status.is_not(None),
        week.c.user_gid == entries.c.created_by_gid,
        week.c.start_date <= entries.c.entered_on, week.c.end_date >= entries.c.entered_on,
        week.c.approval_status != entries.c.approval_status)


def in_window(conn: sa.Connection, scopes: Sequence[Scope], window: DateWindow, limit: int,
              after: str | None = None) -> list[str]:
    """Up to `limit` live entries of `scopes` entered within `window`, whatever their
    details, in gid order after `after` (`backfill --details`)."""
    query = (sa.select(entries.c.gid)
             .where(entries.c.deleted_at.is_(None), _linked_to(scopes))
             .order_by(entries.c.gid).limit(limit))
    if window.since is not None:
        query = query.where(entries.c.entered_on >= window.since)
    if window.until is not None:
        query = query.where(entries.c.entered_on <= window.until)
    if after is not None:
        query = query.where(entries.c.gid > after)
    return list(conn.execute(query).scalars())


def backlog_size(conn: sa.Connection, scopes: Sequence[Scope] | None = None) -> int:
    """How many live entries (of `scopes`, else of all) have details still to read."""
    query = sa.select(sa.func.count()).select_from(entries).where(
        entries.c.deleted_at.is_(None), _unread())
    if scopes:
        query = query.where(_linked_to(scopes))
    return int(conn.scalar(query))
