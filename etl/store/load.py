"""Writing entries: batched, dialect-aware upserts that never rewrite an unchanged row.

Each batch is classified against what the table already holds (one SELECT of primary
key and content hash), so the counts of inserted / updated / unchanged are exact on
every backend and only new or changed rows are sent. The upsert itself still guards its
UPDATE with "the row differs", so a row that did not change is never rewritten.

This is the hot path of a sync: rows go to the driver as tuples in SQL text compiled
once (on PostgreSQL, new entries by COPY straight into their table), and lookups by gid
take one parameter a chunk (see `etl.store.bulk`).
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

from etl.config import Scope
from etl.store.bulk import (
    IN_CHUNK,
    chunks,
    copy_rows,
    copy_stamp,
    copy_unless_duplicate,
    processor,
    select_among,
)
from etl.store.schema import rejected_records, time_tracking_entries
from etl.transform import CONTENT_COLUMNS, HASH, VALUE_COLUMNS, Rejection, RowValues

entries = time_tracking_entries


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


K = TypeVar("K", bound=Hashable)


@dataclass
class Upserted(Generic[K]):
    """What `upsert_entries` did: counts by key, and the gids it inserted and updated."""

    counts: dict[K, UpsertCounts]
    new: set[str]
    changed: set[str] = field(default_factory=set)


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
    latest = {values[0]: values for _, values in rows}  # the last version of each gid
    stored = stored_versions(conn, latest)
    # in gid order: runs over overlapping entries then lock rows in the same order
    new = sorted([values for gid, values in latest.items() if gid not in stored])
    changed = sorted([values for gid, values in latest.items()
                      if gid in stored and stored[gid] != values[HASH]])
    # each gid counts for the key of its first sighting; its other sightings as unchanged
    first = {values[0]: key for key, values in reversed(rows)}
    inserted = Counter(map(first.__getitem__, map(_GID, new)))
    updated = Counter(map(first.__getitem__, map(_GID, changed)))
    for key, seen in Counter(map(_KEY, rows)).items():
        added, modified = inserted.get(key, 0), updated.get(key, 0)
        counts[key] = UpsertCounts(added, modified, seen - added - modified)
    _write_entries(conn, new, changed, now)
    return Upserted(counts, set(map(_GID, new)), set(map(_GID, changed)))


_KEY = operator.itemgetter(0)
_GID = operator.itemgetter(0)


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
    stamp = copy_stamp(now) if dialect.name == "postgresql" else processor(
        entries.c.updated_at, dialect)(now)
    tail = (stamp, stamp, None)
    if dialect.name == "postgresql":
        if new and not copy_unless_duplicate(conn, entries.name, _WRITTEN,
                                              rows := [row + tail for row in new]):
            _upsert_bycopy_rows(conn, rows)
        if changed:
            _upsert_bycopy_rows(conn, [row + tail for row in changed])
    elif new or changed:
        conn.exec_driver_sql(_upsert_sql(dialect), [row + tail for row in (*new, *changed)])


def stored_versions(conn: sa.Connection, gids: Iterable[str]) -> dict[str, str | None]:
    """gid -> content_hash of the entries the table holds ("" for one marked deleted,
    None for one loaded before content hashes existed); absent gids are new."""
    stored: dict[str, str | None] = {}
    query = "SELECT gid, content_hash, deleted_at IS NULL FROM time_tracking_entries WHERE gid"
    for gid, content_hash, live in select_among(conn, query, list(gids)):
        stored[gid] = content_hash if live else ""
    return stored


def _upsert_bycopy_rows(conn: sa.Connection, values: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY the batch into a temporary table, then one INSERT ... SELECT ...
    ON CONFLICT: several times faster than row-by-row statements for large batches."""
    names = ", ".join(_WRITTEN)
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS entries_batch "
        "(LIKE time_tracking_entries) ON COMMIT DELETE ROWS"
    )
    copy_rows(conn, "entries_batch", _WRITTEN, values)
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


def mark_deleted(conn: sa.Connection, gids: Sequence[str], now: dt.datetime) -> int:
    """Asana confirmed these entries are gone: stamp `deleted_at` (the rows stay).
    Returns how many were live until now."""
    marked = 0
    for chunk in chunks(list(gids), IN_CHUNK):
        marked += conn.execute(
            sa.update(entries)
            .where(entries.c.gid.in_(chunk), entries.c.deleted_at.is_(None))
            .values(deleted_at=now)
        ).rowcount
    return marked


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
