"""Which scope's listing holds which entry, and what the pass of a scope has seen:
what deletion detection and the run plan ask the database.

Links are inserted only where missing (a SELECT finds the others; on PostgreSQL one
INSERT ... ON CONFLICT DO NOTHING RETURNING both writes and names them), so a run over
unchanged data writes no link. Seen-marks, the run's own bookkeeping, are appended in
bulk (COPY on PostgreSQL), and only for entries linked before the pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from etl.config import DateWindow, Scope
from etl.store.bulk import (
    IN_CHUNK,
    bulk_insert,
    chunks,
    copy_stamp,
    copy_unless_duplicate,
    driver_value,
    insert_unless_duplicate,
    pg_array,
    select_among,
)
from etl.store.schema import (
    sync_run_seen_entries,
    sync_runs,
    time_tracking_entries,
    time_tracking_entry_scopes,
)

entries = time_tracking_entries
links = time_tracking_entry_scopes
seen = sync_run_seen_entries


def link_entries(
    conn: sa.Connection, scope: Scope, gids: Iterable[str], now: dt.datetime,
    also: Iterable[str] = (), new: Container[str] = frozenset(),
) -> list[str]:
    """Record that `scope`'s listing holds these entries; existing links are not written,
    so a run over unchanged data inserts nothing.

    `new` may name entries this transaction inserted (`Upserted.new`): links to them
    exist only if someone deleted the entries by hand, so theirs are written without a
    probe (COPY on PostgreSQL), and should one exist, all are probed.

    Returns the gids, of `gids` and of `also` (entries seen but not loaded: rejected
    records), that were linked before: only those need a seen-mark (see `mark_seen`).
    """
    return link_batch(conn, {scope: gids}, {scope: also}, now, new)[scope]


def link_batch(
    conn: sa.Connection, listed: Mapping[Scope, Iterable[str]],
    also: Mapping[Scope, Iterable[str]], now: dt.datetime, new: Container[str] = frozenset(),
) -> dict[Scope, list[str]]:
    """`link_entries` for every scope of a batch, by scope, in as few statements as the
    backend allows: on SQLite and MySQL the links of all the scopes' new entries go in
    one INSERT, where a first sync's batch sent a probe and an INSERT for each of its
    scopes, and only the scopes with other entries are probed."""
    wanted = {scope: list(dict.fromkeys(gids)) for scope, gids in listed.items()}
    seen_too = {}
    for scope, gids in wanted.items():
        loaded = set(gids)
        seen_too[scope] = [g for g in dict.fromkeys(also.get(scope, ())) if g not in loaded]
    if conn.dialect.name == "postgresql":
        return {scope: _link_pg(conn, scope, gids, seen_too[scope], now, new)
                for scope, gids in wanted.items()}
    stamp = driver_value(links.c.first_seen_at, conn.dialect, now)
    fresh = [(scope.kind, scope.gid, g, stamp) for scope, gids in wanted.items()
             for g in gids if g in new]
    probed, before = wanted, {scope: [] for scope in wanted}
    if fresh and _insert_fresh(conn, fresh):
        probed = {scope: [g for g in gids if g not in new] for scope, gids in wanted.items()}
    elif fresh and conn.dialect.name == "sqlite":  # written all the same: which were there
        probed = {scope: [g for g in gids if g not in new] for scope, gids in wanted.items()}
        before = {scope: _linked(conn, scope, [g for g in gids if g in new], older_than=stamp)
                  for scope, gids in wanted.items()}
    for scope, gids in probed.items():
        existing = set(_linked(conn, scope, [*gids, *seen_too[scope]]))
        kind, gid = scope.kind, scope.gid
        missing = [(kind, gid, g, stamp) for g in gids if g not in existing]
        if missing:
            bulk_insert(conn, links, _LINK_COLUMNS, missing, processed=True)
        before[scope] += [g for g in (*gids, *seen_too[scope]) if g in existing]
    return before


def _insert_fresh(conn: sa.Connection, rows: list[tuple[Any, ...]]) -> bool:
    """The links of new entries, written without a probe; False if one was there already
    (its entry deleted by hand). On SQLite the others are written all the same (a
    savepoint there would commit the batch: pysqlite opens no transaction before one),
    on MySQL none are."""
    if conn.dialect.name != "sqlite":
        return insert_unless_duplicate(conn, links.name, _LINK_COLUMNS, rows)
    written = conn.exec_driver_sql(
        "INSERT INTO time_tracking_entry_scopes (scope_type, scope_gid, entry_gid, "
        "first_seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows).rowcount
    return written == len(rows)


def _link_pg(conn: sa.Connection, scope: Scope, wanted: list[str], also: list[str],
             now: dt.datetime, new: Container[str]) -> list[str]:
    stamp = copy_stamp(now)
    fresh = [(scope.kind, scope.gid, g, stamp) for g in wanted if g in new]
    maybe = [g for g in wanted if g not in new]
    if fresh and not copy_unless_duplicate(conn, links.name, _LINK_COLUMNS, fresh):
        maybe = wanted
    # the others: one statement inserts what is missing and names it, by a
    # unique-index probe a row; a lookup by plan went wrong on a table that grew since
    # its last ANALYZE (it scanned a scope's every link for every batch)
    inserted = {gid for gid, in conn.exec_driver_sql(
        "INSERT INTO time_tracking_entry_scopes (scope_type, scope_gid, entry_gid, "
        "first_seen_at) SELECT %s, %s, gid, %s FROM unnest(%s::varchar[]) AS gid "
        "ON CONFLICT DO NOTHING RETURNING entry_gid",
        (scope.kind, scope.gid, now, pg_array(maybe)),
    )} if maybe else set()
    before = [g for g in maybe if g not in inserted]
    return before + _linked(conn, scope, also)


_LINK_COLUMNS = ("scope_type", "scope_gid", "entry_gid", "first_seen_at")


def _linked(conn: sa.Connection, scope: Scope, gids: list[str],
            older_than: Any = None) -> list[str]:
    """Those of `gids` that are linked to `scope` (with `older_than`, a first-seen stamp
    as the driver has it: only by links seen first at another time)."""
    if not gids:
        return []
    query = ("SELECT entry_gid FROM time_tracking_entry_scopes WHERE scope_type = {p} "
             "AND scope_gid = {p} AND ")
    if older_than is None:
        return [gid for gid, in select_among(conn, query + "entry_gid", gids, scope.kind,
                                             scope.gid)]
    return [gid for gid, in select_among(conn, query + "first_seen_at <> {p} AND entry_gid",
                                         gids, scope.kind, scope.gid, older_than)]


def mark_seen(conn: sa.Connection, run_id: int, scope: Scope, gids: Iterable[str]) -> None:
    """Remember, for deletion detection, that this pass of `scope` saw these entries.

    Only entries linked before the pass need it: a link the pass created was seen by
    it (`deletion_candidates` leaves those out), so a first sync writes no seen-marks.
    """
    mark_all_seen(conn, run_id, {scope: gids})


def mark_all_seen(conn: sa.Connection, run_id: int, seen_by: Mapping[Scope, Iterable[str]]
                  ) -> None:
    """`mark_seen` for every scope of a batch, in one statement."""
    rows = [(run_id, scope.kind, scope.gid, g) for scope, gids in seen_by.items()
            for g in dict.fromkeys(gids)]
    if rows:
        bulk_insert(conn, seen, ("run_id", "scope_type", "scope_gid", "entry_gid"), rows)


def unlink(conn: sa.Connection, scope: Scope, gids: Sequence[str]) -> None:
    """These entries left this scope's listing (moved to another project, say)."""
    for chunk in chunks(list(gids), IN_CHUNK):
        conn.execute(
            sa.delete(links).where(
                links.c.scope_type == scope.kind, links.c.scope_gid == scope.gid,
                links.c.entry_gid.in_(chunk),
            )
        )


def forget_seen(conn: sa.Connection, run_id: int | None = None, scope: Scope | None = None) -> None:
    """Drop a finished pass's seen-rows (or, with no arguments, every leftover)."""
    query = sa.delete(seen)
    if run_id is not None:
        query = query.where(seen.c.run_id == run_id)
    if scope is not None:
        query = query.where(seen.c.scope_type == scope.kind, seen.c.scope_gid == scope.gid)
    conn.execute(query)


def deletion_candidates(
    conn: sa.Connection, run_id: int, scope: Scope, window: DateWindow, limit: int,
    after: str | None = None,
) -> list[str]:
    """Live entries linked to `scope` (within `window`) that this pass has not seen, in
    gid order from just after `after` (keyset paging: each candidate comes once)."""
    # A set difference, not NOT EXISTS: the planner hashes it whatever its statistics
    # say (a fresh table's "1 row" estimate made PostgreSQL compare every link with every
    # seen-mark, seconds per scope).
    started = sa.select(sync_runs.c.started_at).where(sync_runs.c.id == run_id).scalar_subquery()
    unseen = sa.except_(
        sa.select(links.c.entry_gid).where(
            links.c.scope_type == scope.kind, links.c.scope_gid == scope.gid,
            # a link this pass created was seen by it (and has no seen-mark): a clock
            # stepping back would only make a seen entry a candidate, which Asana confirms
            links.c.first_seen_at < started,
        ),
        sa.select(seen.c.entry_gid).where(
            seen.c.run_id == run_id, seen.c.scope_type == scope.kind,
            seen.c.scope_gid == scope.gid,
        ),
    ).subquery()
    query = (
        sa.select(entries.c.gid)
        .where(entries.c.gid.in_(sa.select(unseen.c.entry_gid)), entries.c.deleted_at.is_(None))
        .order_by(entries.c.gid)
        .limit(limit)
    )
    if after is not None:
        query = query.where(entries.c.gid > after)
    if window.since is not None:
        query = query.where(entries.c.entered_on >= window.since)
    if window.until is not None:
        query = query.where(entries.c.entered_on <= window.until)
    return list(conn.execute(query).scalars())


def linked_live_gids(conn: sa.Connection, scope: Scope, window: DateWindow) -> list[str]:
    """Gids of the live entries linked to `scope`, within `window`."""
    query = (
        sa.select(links.c.entry_gid)
        .join(entries, entries.c.gid == links.c.entry_gid)
        .where(links.c.scope_type == scope.kind, links.c.scope_gid == scope.gid,
               entries.c.deleted_at.is_(None))
    )
    if window.since is not None:
        query = query.where(entries.c.entered_on >= window.since)
    if window.until is not None:
        query = query.where(entries.c.entered_on <= window.until)
    return list(conn.execute(query).scalars())


def entries_by_day(conn: sa.Connection, scope: Scope,
                   window: DateWindow) -> list[tuple[dt.date, int]]:
    """How many live entries linked to `scope` the table holds on each `entered_on` day
    of `window`: what the run plan sizes listings by."""
    day = entries.c.entered_on
    query = (
        sa.select(day, sa.func.count())
        .join(links, links.c.entry_gid == entries.c.gid)
        .where(links.c.scope_type == scope.kind, links.c.scope_gid == scope.gid,
               entries.c.deleted_at.is_(None))
        .group_by(day)
    )
    if window.since is not None:
        query = query.where(day >= window.since)
    if window.until is not None:
        query = query.where(day <= window.until)
    return [(_as_date(d), n) for d, n in conn.execute(query)]


def _as_date(value: Any) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value
