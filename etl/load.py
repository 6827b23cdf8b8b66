"""Writing entries: batched, dialect-aware upserts that never rewrite an unchanged row.

Each batch is classified against what the table already holds (one SELECT by primary
key), so the counts of inserted / updated / unchanged are exact on every backend and
only new or changed rows are sent. The upsert itself still guards its UPDATE with "the
row differs", so a row that did not change is never rewritten even if two writers race.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from etl.config import DateWindow, Scope
from etl.db import (
    rejected_records,
    sync_run_seen_entries,
    time_tracking_entries,
    time_tracking_entry_scopes,
)
from etl.transform import CONTENT_COLUMNS, EntryRow

entries = time_tracking_entries
links = time_tracking_entry_scopes
seen = sync_run_seen_entries


@dataclass
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def upsert_entries(conn: sa.Connection, rows: Sequence[EntryRow], now: dt.datetime) -> UpsertCounts:
    """Insert new entries, update changed ones, leave unchanged ones untouched.

    An entry that comes back after being marked deleted counts as updated (its
    `deleted_at` is cleared). A gid repeated within `rows` is counted once as whatever
    its last version is, and its earlier copies as unchanged.
    """
    counts = UpsertCounts()
    latest: dict[str, EntryRow] = {}
    for row in rows:
        latest[row["gid"]] = row
    counts.unchanged = len(rows) - len(latest)
    if not latest:
        return counts

    columns = [entries.c.gid, entries.c.deleted_at, *(entries.c[c] for c in CONTENT_COLUMNS)]
    stored = {
        r.gid: r
        for r in conn.execute(sa.select(*columns).where(entries.c.gid.in_(list(latest))))
    }
    to_write: list[dict[str, Any]] = []
    for gid, row in latest.items():
        old = stored.get(gid)
        if old is None:
            counts.inserted += 1
        elif old.deleted_at is not None or any(old._mapping[c] != row[c] for c in CONTENT_COLUMNS):
            counts.updated += 1
        else:
            counts.unchanged += 1
            continue
        to_write.append({**row, "first_seen_at": now, "updated_at": now, "deleted_at": None})
    if to_write:
        conn.execute(_upsert_statement(conn.dialect.name), to_write)
    return counts


def _upsert_statement(dialect: str) -> sa.Executable:
    """`INSERT ... ON CONFLICT/DUPLICATE KEY UPDATE` of the content for this dialect."""
    updated = [*CONTENT_COLUMNS, "updated_at", "deleted_at"]
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = insert(entries)
        differs = sa.or_(
            entries.c.deleted_at.is_not(None),
            *(entries.c[c].is_distinct_from(stmt.excluded[c]) for c in CONTENT_COLUMNS),
        )
        return stmt.on_conflict_do_update(
            index_elements=[entries.c.gid],
            set_={c: stmt.excluded[c] for c in updated},
            where=differs,
        )
    if dialect == "mysql":
        stmt = mysql.insert(entries)
        # MySQL has no WHERE on this clause; only new or changed rows reach it (see above)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updated})
    raise NotImplementedError(f"no upsert for the {dialect} dialect")


def link_entries(conn: sa.Connection, scope: Scope, gids: Iterable[str], now: dt.datetime) -> int:
    """Record that `scope`'s listing holds these entries; returns how many links are new."""
    return _insert_missing(conn, links, {"scope_type": scope.kind, "scope_gid": scope.gid},
                           gids, {"first_seen_at": now})


def mark_seen(conn: sa.Connection, run_id: int, scope: Scope, gids: Iterable[str]) -> None:
    """Remember, for deletion detection, that this pass of `scope` saw these entries."""
    key = {"run_id": run_id, "scope_type": scope.kind, "scope_gid": scope.gid}
    _insert_missing(conn, seen, key, gids, {})


def _insert_missing(
    conn: sa.Connection, table: sa.Table, key: dict[str, Any], gids: Iterable[str],
    extra: dict[str, Any],
) -> int:
    """Insert (key, entry_gid) rows that are not there yet; never rewrite existing ones."""
    wanted = set(gids)
    if not wanted:
        return 0
    existing = set(
        conn.execute(
            sa.select(table.c.entry_gid).where(
                *(table.c[k] == v for k, v in key.items()), table.c.entry_gid.in_(list(wanted))
            )
        ).scalars()
    )
    new = sorted(wanted - existing)
    if new:
        conn.execute(sa.insert(table), [{**key, "entry_gid": g, **extra} for g in new])
    return len(new)


def deletion_candidates(
    conn: sa.Connection, run_id: int, scope: Scope, window: DateWindow, limit: int
) -> list[str]:
    """Live entries linked to `scope` (within `window`) that this pass has not seen."""
    not_seen = ~sa.exists().where(
        seen.c.run_id == run_id,
        seen.c.scope_type == scope.kind,
        seen.c.scope_gid == scope.gid,
        seen.c.entry_gid == links.c.entry_gid,
    )
    query = (
        sa.select(links.c.entry_gid)
        .join(entries, entries.c.gid == links.c.entry_gid)
        .where(
            links.c.scope_type == scope.kind,
            links.c.scope_gid == scope.gid,
            entries.c.deleted_at.is_(None),
            not_seen,
        )
        .order_by(links.c.entry_gid)
        .limit(limit)
    )
    if window.since is not None:
        query = query.where(entries.c.entered_on >= window.since)
    if window.until is not None:
        query = query.where(entries.c.entered_on <= window.until)
    return list(conn.execute(query).scalars())


def mark_deleted(conn: sa.Connection, gid: str, now: dt.datetime) -> bool:
    """Asana confirmed the entry is gone: stamp `deleted_at` (the row stays)."""
    result = conn.execute(
        sa.update(entries)
        .where(entries.c.gid == gid, entries.c.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    return result.rowcount == 1


def unlink(conn: sa.Connection, scope: Scope, gid: str) -> None:
    """The entry left this scope's listing (moved to another project, say)."""
    conn.execute(
        sa.delete(links).where(
            links.c.scope_type == scope.kind, links.c.scope_gid == scope.gid,
            links.c.entry_gid == gid,
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
