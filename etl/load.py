"""Writing entries: batched, dialect-aware upserts that never rewrite an unchanged row.

Each batch is classified against what the table already holds (one SELECT of primary
key and content hash), so the counts of inserted / updated / unchanged are exact on
every backend and only new or changed rows are sent. The upsert itself still guards its
UPDATE with "the row differs", so a row that did not change is never rewritten.
Links are inserted only where missing (a SELECT finds the others; on PostgreSQL one
INSERT ... ON CONFLICT DO NOTHING RETURNING both writes and names them), so a run over
unchanged data writes no link. Seen-marks, the run's own bookkeeping, are appended in
bulk (COPY on PostgreSQL), and only for entries linked before the pass.

This is the hot path of a sync: rows go to the driver as tuples in SQL text compiled
once (on PostgreSQL, new entries and their links by COPY straight into their tables),
and lookups by gid take one parameter a chunk (see `_select_among`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Container, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

from etl.config import DateWindow, Scope
from etl.db import (
    UTCDateTime,
    rejected_records,
    sync_run_seen_entries,
    sync_runs,
    time_tracking_entries,
    time_tracking_entry_scopes,
)
from etl.transform import CONTENT_COLUMNS, HASH, VALUE_COLUMNS, RowValues

entries = time_tracking_entries
links = time_tracking_entry_scopes
seen = sync_run_seen_entries

#: Gids per `IN (...)` list: well under every backend's limit on bound parameters.
IN_CHUNK = 1000


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


K = TypeVar("K", bound=Hashable)


@dataclass
class Upserted(Generic[K]):
    """What `upsert_entries` did: counts by key, and the gids it inserted."""

    counts: dict[K, UpsertCounts]
    new: set[str]


def upsert_entries(
    conn: sa.Connection, rows: Sequence[tuple[K, RowValues]], now: dt.datetime
) -> Upserted[K]:
    """Insert new entries, update changed ones, leave unchanged ones untouched.

    `rows` pairs each row (see `transform.row_values`) with the key (a scope) its counts
    go to. A gid met more than once in the batch (through overlapping scopes, or twice
    in one listing) is written once, in its last version, and counted once against the
    table, for the key of its first sighting: inserted, updated or unchanged; its other
    sightings count as unchanged. So a listing that holds an entry twice, in two
    versions, writes nothing and counts nothing as updated once the last version is
    stored. An entry that comes back after being marked deleted counts as updated (its
    `deleted_at` is cleared).
    """
    counts: dict[K, UpsertCounts] = {}
    if not rows:
        return Upserted(counts, set())
    stored = stored_versions(conn, {values[0] for _, values in rows})
    latest: dict[str, RowValues] = {}
    first: dict[str, UpsertCounts] = {}
    for key, values in rows:
        c = counts.get(key)
        if c is None:
            c = counts[key] = UpsertCounts()
        gid = values[0]
        if gid in latest:
            c.unchanged += 1
        else:
            first[gid] = c
        latest[gid] = values
    for gid, values in latest.items():
        c = first[gid]
        if gid not in stored:
            c.inserted += 1
        elif stored[gid] != values[HASH]:
            c.updated += 1
        else:
            c.unchanged += 1
    # in gid order: runs over overlapping entries then lock rows in the same order
    new = sorted(v for gid, v in latest.items() if gid not in stored)
    changed = sorted(v for gid, v in latest.items() if gid in stored and stored[gid] != v[HASH])
    _write_entries(conn, new, changed, now)
    return Upserted(counts, {v[0] for v in new})


#: The columns an upsert writes, in the order of its values.
_WRITTEN = (*VALUE_COLUMNS, "first_seen_at", "updated_at", "deleted_at")


def _write_entries(
    conn: sa.Connection, new: list[RowValues], changed: list[RowValues], now: dt.datetime
) -> None:
    """Insert the new rows and update the changed ones by the backend's fastest way.

    On PostgreSQL, new rows are COPied straight into the table (the batch's transaction
    saw that they are not there); should another run over other scopes have inserted one
    of them since, they go the way changed ones do: through a temporary table and one
    INSERT ... ON CONFLICT.
    """
    dialect = conn.dialect
    stamp = _copy_stamp(now) if dialect.name == "postgresql" else _processor(
        entries.c.updated_at, dialect)(now)
    tail = (stamp, stamp, None)
    if dialect.name == "postgresql":
        if new and not _copy_unless_duplicate(conn, entries.name, _WRITTEN,
                                              rows := [row + tail for row in new]):
            _upsert_by_copy(conn, rows)
        if changed:
            _upsert_by_copy(conn, [row + tail for row in changed])
    elif new or changed:
        conn.exec_driver_sql(_upsert_sql(dialect), [row + tail for row in (*new, *changed)])


def _copy_unless_duplicate(conn: sa.Connection, table: str, columns: Sequence[str],
                           rows: list[tuple[Any, ...]]) -> bool:
    """PostgreSQL: COPY these rows into `table`, or, if one is there already, nothing
    (the transaction goes on); False then."""
    savepoint = conn.begin_nested()
    try:
        _copy(conn, table, columns, rows)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != "23505":  # unique_violation
            raise
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def _copy_stamp(now: dt.datetime) -> str:
    """A UTC timestamp as COPY text: formatted once a batch (psycopg formatting a
    datetime for every row was half the time spent formatting rows)."""
    return now.astimezone(dt.UTC).isoformat()


def _copy(conn: sa.Connection, table: str, columns: Sequence[str],
          rows: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY these rows into `table`."""
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _processor(column: sa.Column[Any], dialect: sa.Dialect) -> Any:
    """The column's bind processor; for timestamps memoised, as a batch carries one `now`
    (formatting it anew for every row was a tenth of the loader's time)."""
    process = column.type._cached_bind_processor(dialect)
    if process is None or not isinstance(column.type, UTCDateTime):
        return process
    return functools.lru_cache(maxsize=8)(process)


def stored_versions(conn: sa.Connection, gids: Iterable[str]) -> dict[str, str | None]:
    """gid -> content_hash of the entries the table holds ("" for one marked deleted,
    None for one loaded before content hashes existed); absent gids are new."""
    stored: dict[str, str | None] = {}
    query = "SELECT gid, content_hash, deleted_at IS NULL FROM time_tracking_entries WHERE gid"
    for gid, content_hash, live in _select_among(conn, query, list(gids)):
        stored[gid] = content_hash if live else ""
    return stored


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


def _upsert_by_copy(conn: sa.Connection, values: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT ...
    ON CONFLICT: several times faster than row-by-row statements for large batches."""
    names = ", ".join(_WRITTEN)
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS entries_batch "
        "(LIKE time_tracking_entries) ON COMMIT DELETE ROWS"
    )
    _copy(conn, "entries_batch", _WRITTEN, values)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*CONTENT_COLUMNS, "updated_at", "deleted_at"))
    cursor.execute(
        f"INSERT INTO time_tracking_entries ({names}) SELECT {names} FROM entries_batch "
        f"ON CONFLICT (gid) DO UPDATE SET {updates} "
        "WHERE time_tracking_entries.deleted_at IS NOT NULL "
        "OR time_tracking_entries.content_hash IS DISTINCT FROM EXCLUDED.content_hash"
    )
    cursor.execute("TRUNCATE entries_batch")


@functools.lru_cache(maxsize=16)
def _upsert_sql(dialect: sa.Dialect) -> str:
    """`INSERT ... ON CONFLICT/DUPLICATE KEY UPDATE` of the content, for SQLite and MySQL
    (PostgreSQL goes through `_upsert_by_copy`), as SQL text taking the values in
    `_WRITTEN` order: the loader sends tuples straight to the driver."""
    updated = [*CONTENT_COLUMNS, "updated_at", "deleted_at"]
    row = {c: sa.bindparam(c) for c in _WRITTEN}
    if dialect.name == "sqlite":
        stmt = sqlite.insert(entries).values(row)
        differs = sa.or_(
            entries.c.deleted_at.is_not(None),
            entries.c.content_hash.is_distinct_from(stmt.excluded.content_hash),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[entries.c.gid],
            set_={c: stmt.excluded[c] for c in updated},
            where=differs,
        )
    elif dialect.name == "mysql":
        stmt = mysql.insert(entries).values(row)
        # MySQL has no WHERE on this clause; only new or changed rows reach it (see above)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updated})
    else:
        raise NotImplementedError(f"no upsert for the {dialect.name} dialect")
    compiled = stmt.compile(dialect=dialect)
    sql, names = compiled.string, compiled.positiontup
    if not compiled.positional:  # pymysql's %(name)s: made positional, in the same order
        names = re.findall(r"%\((\w+)\)s", sql)
        sql = re.sub(r"%\((\w+)\)s", "%s", sql)
    if list(names or ()) != list(_WRITTEN):  # the tuples' order must be the statement's
        raise AssertionError(f"unexpected parameter order {names}")
    return sql


def link_entries(
    conn: sa.Connection, scope: Scope, gids: Iterable[str], now: dt.datetime,
    also: Iterable[str] = (), new: Container[str] = frozenset(),
) -> list[str]:
    """Record that `scope`'s listing holds these entries; existing links are not written,
    so a run over unchanged data inserts nothing.

    `new` may name entries this transaction inserted (`Upserted.new`): links to them
    exist only if someone deleted the entries by hand, so PostgreSQL COPies theirs
    without a probe (and, should one exist, probes them all).

    Returns the gids, of `gids` and of `also` (entries seen but not loaded: rejected
    records), that were linked before: only those need a seen-mark (see `mark_seen`).
    """
    wanted = list(dict.fromkeys(gids))
    loaded = set(wanted)
    also = [g for g in dict.fromkeys(also) if g not in loaded]
    if conn.dialect.name == "postgresql":
        stamp = _copy_stamp(now)
        fresh = [(scope.kind, scope.gid, g, stamp) for g in wanted if g in new]
        maybe = [g for g in wanted if g not in new]
        if fresh and not _copy_unless_duplicate(conn, links.name, _LINK_COLUMNS, fresh):
            maybe = wanted
        # the others: one statement inserts what is missing and names it, by a
        # unique-index probe a row; a lookup by plan went wrong on a table that grew since
        # its last ANALYZE (it scanned a scope's every link for every batch)
        inserted = {gid for gid, in conn.exec_driver_sql(
            "INSERT INTO time_tracking_entry_scopes (scope_type, scope_gid, entry_gid, "
            "first_seen_at) SELECT %s, %s, gid, %s FROM unnest(%s::varchar[]) AS gid "
            "ON CONFLICT DO NOTHING RETURNING entry_gid",
            (scope.kind, scope.gid, now, _pg_array(maybe)),
        )} if maybe else set()
        before = [g for g in maybe if g not in inserted]
        return before + _linked(conn, scope, also)
    existing = set(_linked(conn, scope, [*wanted, *also]))
    new_links = [(scope.kind, scope.gid, g, now) for g in wanted if g not in existing]
    if new_links:
        bulk_insert(conn, links, _LINK_COLUMNS, new_links)
    return [g for g in (*wanted, *also) if g in existing]


_LINK_COLUMNS = ("scope_type", "scope_gid", "entry_gid", "first_seen_at")


def _linked(conn: sa.Connection, scope: Scope, gids: list[str]) -> list[str]:
    """Those of `gids` that are linked to `scope`."""
    if not gids:
        return []
    query = (
        "SELECT entry_gid FROM time_tracking_entry_scopes WHERE scope_type = {p} "
        "AND scope_gid = {p} AND entry_gid"
    )
    return [gid for gid, in _select_among(conn, query, gids, scope.kind, scope.gid)]


def mark_seen(conn: sa.Connection, run_id: int, scope: Scope, gids: Iterable[str]) -> None:
    """Remember, for deletion detection, that this pass of `scope` saw these entries.

    Only entries linked before the pass need it: a link the pass created was seen by
    it (`deletion_candidates` leaves those out), so a first sync writes no seen-marks.
    """
    rows = [(run_id, scope.kind, scope.gid, g) for g in dict.fromkeys(gids)]
    if rows:
        bulk_insert(conn, seen, ("run_id", "scope_type", "scope_gid", "entry_gid"), rows)


def bulk_insert(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """A plain INSERT of many rows by the backend's fastest way: COPY on PostgreSQL,
    the driver's executemany elsewhere (values go through the columns' bind processors,
    as SQLAlchemy would send them)."""
    dialect = conn.dialect
    processors = [_processor(table.c[c], dialect) for c in columns]
    if any(processors):
        rows = [tuple(p(v) if p else v for p, v in zip(processors, row)) for row in rows]
    if dialect.name == "postgresql":
        _copy(conn, table.name, columns, rows)
        return
    placeholders = ", ".join([_mark(dialect)] * len(columns))
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", rows
    )


def _select_among(
    conn: sa.Connection, query: str, values: list[str], *params: Any
) -> Iterator[tuple[Any, ...]]:
    """Rows of `query` (SQL text ending in a column, `{p}` for each of `params`) where
    that column is one of `values`: one parameter a chunk on SQLite (`json_each`) and
    PostgreSQL (`= ANY`), so nothing is re-rendered or re-parsed per value; `IN (...)`
    in chunks on MySQL."""
    dialect = conn.dialect.name
    mark = _mark(conn.dialect)
    head = query.format(p=mark)
    if dialect == "sqlite":
        sql, size = f"{head} IN (SELECT value FROM json_each(?))", 50_000
        pack: Any = lambda chunk: orjson.dumps(chunk).decode()  # noqa: E731
    elif dialect == "postgresql":
        sql, size, pack = f"{head} = ANY(%s::varchar[])", 50_000, _pg_array
        # by index, always: costed for disk reads, 5,000 probes look dearer than a scan
        # of the whole table until it holds millions of rows, so each batch of a large
        # load scanned it (quadratic; a sixth of the server's time at 200k entries)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    else:
        sql, size, pack = None, IN_CHUNK, None
    for chunk in _chunks(values, size):
        if sql is None:
            text = f"{head} IN ({', '.join([mark] * len(chunk))})"
            yield from conn.exec_driver_sql(text, (*params, *chunk))
        else:
            yield from conn.exec_driver_sql(sql, (*params, pack(chunk)))


def _pg_array(values: list[str]) -> str | list[str]:
    """gids as one array literal, `{1,2,3}`: joined in C, where psycopg adapts a list item
    by item (a tenth of the loader's own time). Only strings of digits need no quoting."""
    if values and all(map(str.isdigit, values)):
        return "{" + ",".join(values) + "}"
    return values


def _mark(dialect: sa.Dialect) -> str:
    """The driver's positional placeholder."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


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


def mark_deleted(conn: sa.Connection, gids: Sequence[str], now: dt.datetime) -> int:
    """Asana confirmed these entries are gone: stamp `deleted_at` (the rows stay).
    Returns how many were live until now."""
    marked = 0
    for chunk in _chunks(list(gids), IN_CHUNK):
        marked += conn.execute(
            sa.update(entries)
            .where(entries.c.gid.in_(chunk), entries.c.deleted_at.is_(None))
            .values(deleted_at=now)
        ).rowcount
    return marked


def unlink(conn: sa.Connection, scope: Scope, gids: Sequence[str]) -> None:
    """These entries left this scope's listing (moved to another project, say)."""
    for chunk in _chunks(list(gids), IN_CHUNK):
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


@dataclass(frozen=True)
class Rejection:
    entry_gid: str | None
    reason: str
    payload: str


def insert_rejected(
    conn: sa.Connection, run_id: int, scope: Scope, rejections: Sequence[Rejection], now: dt.datetime
) -> None:
    """Set bad records aside with their reason, tied to the run that met them."""
    if rejections:
        conn.execute(
            sa.insert(rejected_records),
            [
                {
                    "run_id": run_id,
                    "scope_type": scope.kind,
                    "scope_gid": scope.gid,
                    "entry_gid": r.entry_gid,
                    "reason": r.reason,
                    "payload": r.payload,
                    "rejected_at": now,
                }
                for r in rejections
            ],
        )
