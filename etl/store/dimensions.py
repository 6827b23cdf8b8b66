"""What lives around the entries, in the database: categories and the entries' links to
them, weekly timesheet approvals, rates; and which users and projects to read them for.

Each write looks first and writes only what differs, so a run over unchanged data
writes no row here either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from etl.config import Scope
from etl.dimensions import CategoryRow, RateRow, TimesheetRow
from etl.store.bulk import IN_CHUNK, chunks
from etl.store.schema import (
    rates,
    time_tracking_categories,
    time_tracking_entries,
    time_tracking_entry_categories,
    time_tracking_entry_scopes,
    timesheet_approval_statuses,
)

categories = time_tracking_categories
links = time_tracking_entry_categories
timesheets = timesheet_approval_statuses
entries = time_tracking_entries


def _upsert(conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]],
            extra: Mapping[str, Any] | None = None) -> int:
    """Insert new rows, update those that differ (by gid); `extra`: values set on every
    row written (and compared: a row that lacks them differs). Returns rows written."""
    latest = {row["gid"]: {**row, **(extra or {})} for row in rows}
    names = list(next(iter(latest.values()))) if latest else []
    stored: dict[str, tuple] = {}
    for chunk in chunks(sorted(latest), IN_CHUNK):
        query = sa.select(table.c.gid, *(table.c[n] for n in names)).where(table.c.gid.in_(chunk))
        stored.update({row[0]: tuple(row[1:]) for row in conn.execute(query)})
    new = [row for gid, row in latest.items() if gid not in stored]
    changed = [row for gid, row in latest.items()
               if gid in stored and stored[gid] != tuple(row[n] for n in names)]
    if new:
        conn.execute(sa.insert(table), new)
    if changed:
        conn.execute(sa.update(table).where(table.c.gid == sa.bindparam("g")).values(
            {n: sa.bindparam(f"v_{n}") for n in names if n != "gid"}),
            [{"g": row["gid"], **{f"v_{n}": row[n] for n in names if n != "gid"}}
             for row in changed])
    return len(new) + len(changed)


def upsert_categories(conn: sa.Connection, rows: Sequence[CategoryRow], workspace: str) -> int:
    """Categories of `workspace` as Asana lists them (one listed again is no longer gone)."""
    return _upsert(conn, categories, rows, {"workspace_gid": workspace, "deleted_at": None})


def mark_gone_categories(conn: sa.Connection, workspace: str, listed: set[str],
                         now: dt.datetime) -> int:
    """Categories of `workspace` Asana lists no more, archived or not: marked gone, the
    rows stay."""
    gone = [gid for (gid,) in conn.execute(
        sa.select(categories.c.gid).where(categories.c.deleted_at.is_(None),
                                          categories.c.workspace_gid == workspace))
            if gid not in listed]
    for chunk in chunks(gone, IN_CHUNK):
        conn.execute(sa.update(categories).where(categories.c.gid.in_(chunk))
                     .values(deleted_at=now))
    return len(gone)


def link_categories(conn: sa.Connection, carried: Mapping[str, Sequence[str]]) -> int:
    """Each of these entries carries exactly these categories: links it no longer has go,
    new ones come, the others stay untouched. Returns links written or removed."""
    stored: dict[str, set[str]] = {gid: set() for gid in carried}
    for chunk in chunks(sorted(carried), IN_CHUNK):
        for entry, category in conn.execute(
                sa.select(links.c.entry_gid, links.c.category_gid)
                .where(links.c.entry_gid.in_(chunk))):
            stored[entry].add(category)
    added = [{"entry_gid": e, "category_gid": c} for e, cs in carried.items()
             for c in dict.fromkeys(cs) if c not in stored[e]]
    removed = [(e, c) for e, cs in stored.items() for c in cs if c not in set(carried[e])]
    if added:
        conn.execute(sa.insert(links), added)
    for entry, category in removed:
        conn.execute(sa.delete(links).where(links.c.entry_gid == entry,
                                            links.c.category_gid == category))
    return len(added) + len(removed)


def upsert_timesheets(conn: sa.Connection, rows: Sequence[TimesheetRow]) -> int:
    return _upsert(conn, timesheets, rows)


def upsert_rates(conn: sa.Connection, rows: Sequence[RateRow]) -> int:
    return _upsert(conn, rates, rows)


def drop_unlisted_rates(conn: sa.Connection, project: str, listed: set[str]) -> int:
    """A project's rates that Asana lists no more: gone (a rate is a setting, not a
    record of what happened)."""
    gone = [gid for (gid,) in conn.execute(sa.select(rates.c.gid)
                                           .where(rates.c.parent_gid == project))
            if gid not in listed]
    for chunk in chunks(gone, IN_CHUNK):
        conn.execute(sa.delete(rates).where(rates.c.gid.in_(chunk)))
    return len(gone)


def _of_scopes(scopes: Sequence[Scope]) -> sa.ColumnElement[bool]:
    scope_links = time_tracking_entry_scopes
    return sa.exists().where(
        scope_links.c.entry_gid == entries.c.gid,
        sa.tuple_(scope_links.c.scope_type, scope_links.c.scope_gid).in_(
            [(s.kind, s.gid) for s in scopes]))


def projects_to_rate(conn: sa.Connection, scopes: Sequence[Scope]) -> list[str]:
    """The projects the live entries of `scopes` are attributed to."""
    query = (sa.select(entries.c.attributable_to_gid).distinct()
             .where(entries.c.deleted_at.is_(None), entries.c.attributable_to_gid.is_not(None),
                    _of_scopes(scopes))
             .order_by(entries.c.attributable_to_gid))
    return list(conn.execute(query).scalars())


def weeks_to_read(conn: sa.Connection, scopes: Sequence[Scope], recent: dt.date,
                  page_size: int) -> list[tuple[str, dt.date, dt.date | None]]:
    """The weeks to read of each user whose live entries `scopes` hold, as (user, from,
    to or None for up to now): all from the Monday of their earliest entry when a week
    of theirs was never read; else each older week that can still change (not approved)
    and, if they have entries from the week of `recent` on, the recent weeks (an
    approval can be recalled), in as few requests as `cheapest_reads` finds (`page_size`
    weeks a page)."""
    first_entry = (sa.select(entries.c.created_by_gid.label("user"),
                             sa.func.min(entries.c.entered_on).label("first"),
                             sa.func.max(entries.c.entered_on).label("last"))
                   .where(entries.c.deleted_at.is_(None), entries.c.created_by_gid.is_not(None),
                          _of_scopes(scopes))
                   .group_by(entries.c.created_by_gid).subquery())
    sheets = (sa.select(timesheets.c.user_gid.label("user"),
                        sa.func.min(timesheets.c.start_date).label("read_from"))
              .group_by(timesheets.c.user_gid).subquery())
    query = (sa.select(first_entry.c.user, first_entry.c.first, first_entry.c.last,
                       sheets.c.read_from)
             .outerjoin(sheets, sheets.c.user == first_entry.c.user)
             .order_by(first_entry.c.user))
    found: list[tuple[str, dt.date, dt.date | None]] = []
    known: dict[str, bool] = {}  # user -> has entries in the recent weeks
    recent_monday = recent - dt.timedelta(days=recent.weekday())
    for user, first, last, read_from in conn.execute(query):
        first, read_from = _day(first), _day(read_from)
        monday = first - dt.timedelta(days=first.weekday())
        if read_from is None or monday < read_from:
            found.append((user, monday, None))
        else:
            known[user] = _day(last) >= recent_monday
    # each known user's weeks from their oldest open one before `recent` (none: no row)
    oldest_open = (sa.select(timesheets.c.user_gid.label("user"),
                             sa.func.min(timesheets.c.start_date).label("oldest"))
                   .where(timesheets.c.start_date < recent,
                          timesheets.c.approval_status != "APPROVED")
                   .group_by(timesheets.c.user_gid).subquery())
    weeks: dict[str, list[tuple[dt.date, dt.date, bool]]] = {user: [] for user in known}
    for chunk in chunks(list(known), IN_CHUNK):
        for user, start, end, status in conn.execute(
            sa.select(timesheets.c.user_gid, timesheets.c.start_date, timesheets.c.end_date,
                      timesheets.c.approval_status)
            .join(oldest_open, sa.and_(oldest_open.c.user == timesheets.c.user_gid,
                                       timesheets.c.start_date >= oldest_open.c.oldest))
            .where(timesheets.c.user_gid.in_(chunk))
            .order_by(timesheets.c.user_gid, timesheets.c.start_date)):
            weeks[user].append((_day(start), _day(end), status != "APPROVED"))
    for user, lately in known.items():
        found += [(user, since, until)
                  for since, until in cheapest_reads(weeks[user], recent, page_size, lately)]
    found.sort(key=lambda read: (read[0], read[1]))
    return found


def cheapest_reads(weeks: Sequence[tuple[dt.date, dt.date, bool]], recent: dt.date,
                   page_size: int, lately: bool = True) -> list[tuple[dt.date, dt.date | None]]:
    """A user's reads, as (from, to or None for up to now), that cover each older week
    that is open and, if the user has entries in them (`lately`), the weeks from `recent`
    on, in the fewest requests: one listing up to now from some open week (or from
    `recent`, or none), each open week before it alone.

    `weeks`: the user's stored weeks in date order, from their oldest open one, as
    (start, end, open). A listing from a week costs a page per `page_size` weeks stored
    from it on (one more for the week that may be new); a week alone costs one."""
    opens = [i for i, (start, _, is_open) in enumerate(weeks) if is_open and start < recent]
    recent_weeks = sum(1 for start, _, _ in weeks if start >= recent)

    def pages(count: int) -> int:
        return -(-count // page_size)

    # (requests, weeks read alone): a listing from the n-th open week, or from `recent`
    # (none if not `lately`) and every open week alone
    costs = [(pages(len(weeks) - i + 1) + n, n) for n, i in enumerate(opens)]
    costs.append((pages(recent_weeks + 1) * lately + len(opens), len(opens)))
    _, alone = min(costs)
    reads: list[tuple[dt.date, dt.date | None]] = [
        (weeks[i][0], weeks[i][1]) for i in opens[:alone]]
    if alone < len(opens):
        reads.append((weeks[opens[alone]][0], None))
    elif lately:
        reads.append((recent, None))
    return reads


def _day(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value
