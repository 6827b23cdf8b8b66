"""Run bookkeeping: `sync_runs` (one row a run) and `sync_run_scopes` (one row a scope a run).

These are the only tables a run over unchanged data writes to. Counters are added
page by page in the same transaction as the page's rows, so they always match what
was committed.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from etl.config import DateWindow, Scope
from etl.store.schema import sync_run_scopes, sync_runs

RUNNING, SUCCEEDED, PARTIAL, FAILED, ABANDONED = (
    "running",
    "succeeded",
    "partial",
    "failed",
    "abandoned",
)


@dataclass
class PageCounts:
    """What one page (or a whole scope, or a whole run) did to the tables."""

    entries: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0

    def add(self, other: PageCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def start_run(conn: sa.Connection, command: str, scopes_total: int, now: dt.datetime,
              details_list: str | None = None) -> int:
    result = conn.execute(
        sa.insert(sync_runs).values(
            command=command,
            started_at=now,
            status=RUNNING,
            scopes_total=scopes_total,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            details_list=details_list,
        )
    )
    return int(result.inserted_primary_key[0])


def start_scope(conn: sa.Connection, run_id: int, scope: Scope, now: dt.datetime,
                window: DateWindow = DateWindow()) -> None:
    """The scope's row, with the days the run reads of it (both bounds null: all)."""
    conn.execute(
        sa.insert(sync_run_scopes).values(
            run_id=run_id, scope_type=scope.kind, scope_gid=scope.gid, status=RUNNING,
            started_at=now, window_since=window.since, window_until=window.until,
        )
    )


def record_page(
    conn: sa.Connection, run_id: int, scope: Scope, counts: PageCounts, pages: int = 1
) -> None:
    """Add one page's counts (or a deletion check's) to its scope's row and the run's row."""
    record_batch(conn, run_id, {scope: (counts, pages)})


def record_batch(
    conn: sa.Connection, run_id: int, batch: dict[Scope, tuple[PageCounts, int]]
) -> None:
    """Add a batch's counts and pages to its scopes' rows (one statement for all: a
    batch of a hundred users' pages sent a hundred) and, summed, to the run's row."""
    total = PageCounts()
    rows = []
    for scope, (counts, pages) in batch.items():
        total.add(counts)
        rows.append({"b_run": run_id, "b_kind": scope.kind, "b_gid": scope.gid, "b_pages": pages,
                     **{f"b_{f.name}": getattr(counts, f.name) for f in fields(counts)}})
    if rows:
        conn.execute(_scopes_added(), rows)
    conn.execute(
        sa.update(sync_runs).where(sync_runs.c.id == run_id).values(**_added(sync_runs, total))
    )


@functools.cache
def _scopes_added() -> sa.Update:
    """The UPDATE adding a scope's batch to its row, its values bound by name."""
    c = sync_run_scopes.c
    return (
        sa.update(sync_run_scopes)
        .where(c.run_id == sa.bindparam("b_run"), c.scope_type == sa.bindparam("b_kind"),
               c.scope_gid == sa.bindparam("b_gid"))
        .values(pages=c.pages + sa.bindparam("b_pages"),
                **{f.name: c[f.name] + sa.bindparam(f"b_{f.name}") for f in fields(PageCounts)})
    )


def _added(table: sa.Table, counts: PageCounts) -> dict[str, Any]:
    """Each counter column of `table` plus its count (the run's `entries` column is
    named `entries_seen`)."""
    values = {}
    for f in fields(counts):
        name = "entries_seen" if f.name == "entries" and table is sync_runs else f.name
        values[name] = table.c[name] + getattr(counts, f.name)
    return values


def _scope_row(run_id: int, scope: Scope) -> tuple[Any, ...]:
    return (
        sync_run_scopes.c.run_id == run_id,
        sync_run_scopes.c.scope_type == scope.kind,
        sync_run_scopes.c.scope_gid == scope.gid,
    )


def finish_scope(
    conn: sa.Connection,
    run_id: int,
    scope: Scope,
    status: str,
    now: dt.datetime,
    *,
    retries: int = 0,
    retry_after_seconds: float = 0.0,
    restarts: int = 0,
    listings: int = 0,
    requests: int = 0,
    error: str | None = None,
) -> None:
    conn.execute(
        sa.update(sync_run_scopes)
        .where(*_scope_row(run_id, scope))
        .values(
            status=status,
            finished_at=now,
            retries=retries,
            retry_after_seconds=retry_after_seconds,
            restarts=restarts,
            listings=listings,
            requests=requests,
            error=error,
        )
    )


def finish_run(
    conn: sa.Connection,
    run_id: int,
    status: str,
    now: dt.datetime,
    *,
    scopes_failed: int = 0,
    error: str | None = None,
    **counters: int | None,
) -> None:
    """The run's final status, and its counters of what it read beyond the listings
    (`details_requests`, `details_changed`, `details_backlog`, `listing_requests`,
    `categories_requests`, `timesheets_requests`, `rates_requests`)."""
    conn.execute(
        sa.update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, finished_at=now, scopes_failed=scopes_failed, error=error,
                **counters)
    )


def running_runs(conn: sa.Connection) -> dict[int, list[Scope]]:
    """Runs still marked running, with their scopes (a live run holds all their locks)."""
    query = (
        sa.select(sync_run_scopes.c.run_id, sync_run_scopes.c.scope_type, sync_run_scopes.c.scope_gid)
        .join(sync_runs, sync_runs.c.id == sync_run_scopes.c.run_id)
        .where(sync_runs.c.status == RUNNING)
    )
    running: dict[int, list[Scope]] = {}
    for run_id, kind, gid in conn.execute(query):
        running.setdefault(run_id, []).append(Scope(kind, gid))
    return running


def processes(conn: sa.Connection, ids: Sequence[int]) -> dict[int, tuple[str | None, int | None,
                                                                          dt.datetime]]:
    """run id -> the host and pid that run it, and when it started."""
    if not ids:
        return {}
    query = sa.select(sync_runs.c.id, sync_runs.c.hostname, sync_runs.c.pid,
                      sync_runs.c.started_at).where(sync_runs.c.id.in_(list(ids)))
    return {row.id: (row.hostname, row.pid, row.started_at) for row in conn.execute(query)}


def process_alive(hostname: str | None, pid: int | None, started_at: dt.datetime) -> bool | None:
    """Whether the process that started a run (on `hostname`, as `pid`, at `started_at`)
    still runs: known on this host only, and on POSIX systems (None elsewhere: a run is
    then taken for gone after its locks stayed free for a while). A pid now held by a process
    that started after the run did is another process: the run's is gone."""
    if not pid or hostname != socket.gethostname()[:255]:
        return None
    if os.name != "posix":  # Windows' os.kill(pid, 0) would terminate the process
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    began = _process_started(pid)
    return began is None or began <= started_at + dt.timedelta(seconds=2)


def _process_started(pid: int) -> dt.datetime | None:
    """When process `pid` started (Linux's /proc; None where there is none)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return dt.datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), dt.UTC)


def abandon(conn: sa.Connection, ids: Sequence[int], now: dt.datetime) -> None:
    """These runs' processes are gone: mark them and their unfinished scopes abandoned."""
    if ids:
        conn.execute(
            sa.update(sync_runs)
            .where(sync_runs.c.id.in_(ids), sync_runs.c.status == RUNNING)
            .values(status=ABANDONED, finished_at=now, error="the process running it died")
        )
        conn.execute(
            sa.update(sync_run_scopes)
            .where(sync_run_scopes.c.run_id.in_(ids), sync_run_scopes.c.status == RUNNING)
            .values(status=ABANDONED, finished_at=now)
        )


def last_success(conn: sa.Connection, command: str) -> float | None:
    """Unix time of the last run of `command` that loaded every scope, if any."""
    value = conn.scalar(
        sa.select(sa.func.max(sync_runs.c.finished_at)).where(
            sync_runs.c.status == SUCCEEDED, sync_runs.c.command == command
        )
    )
    return None if value is None else _as_utc(value).timestamp()


def _full_reads() -> sa.Subquery:
    """Per scope, when its last complete read of every day finished."""
    s = sync_run_scopes
    return (
        sa.select(s.c.scope_type, s.c.scope_gid, sa.func.max(s.c.finished_at).label("last_full_read"))
        .where(s.c.status == SUCCEEDED, s.c.window_since.is_(None), s.c.window_until.is_(None))
        .group_by(s.c.scope_type, s.c.scope_gid)
        .subquery()
    )


def last_full_reads(conn: sa.Connection) -> dict[Scope, dt.datetime]:
    """When each scope was last read in full, completely (a sync or a backfill without
    a window): what `[sync] full_every_days` is counted from."""
    full = _full_reads()
    return {Scope(kind, gid): _as_utc(when) for kind, gid, when in conn.execute(sa.select(full))}


def covered_days(conn: sa.Connection) -> dict[Scope, list[DateWindow]]:
    """The days each scope's complete listings have read: the window of each of its runs
    that succeeded (a full read, a backfill's window, a recent run's days), an open end
    being read up to the day the run finished (UTC). Overlapping windows are not merged."""
    s = sync_run_scopes
    query = (
        sa.select(s.c.scope_type, s.c.scope_gid, s.c.window_since, s.c.window_until,
                  sa.func.max(s.c.finished_at))
        .where(s.c.status == SUCCEEDED)
        .group_by(s.c.scope_type, s.c.scope_gid, s.c.window_since, s.c.window_until)
    )
    covered: dict[Scope, list[DateWindow]] = {}
    for kind, gid, since, until, finished in conn.execute(query):
        end = until if until is not None else _as_utc(finished).date()
        if since is None or since <= end:
            covered.setdefault(Scope(kind, gid), []).append(DateWindow(since, end))
    return covered


def recent_runs(conn: sa.Connection, limit: int = 10) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def scope_freshness(conn: sa.Connection) -> list[dict[str, Any]]:
    """Per scope ever listed: its last success and last full read, and its latest run's
    outcome, error, pages, listings and window."""
    s = sync_run_scopes
    last_success = (
        sa.select(s.c.scope_type, s.c.scope_gid, sa.func.max(s.c.finished_at).label("last_success"))
        .where(s.c.status == SUCCEEDED)
        .group_by(s.c.scope_type, s.c.scope_gid)
        .subquery()
    )
    latest_run = (
        sa.select(s.c.scope_type, s.c.scope_gid, sa.func.max(s.c.run_id).label("run_id"))
        .group_by(s.c.scope_type, s.c.scope_gid)
        .subquery()
    )
    full = _full_reads()
    query = (
        sa.select(
            s.c.scope_type,
            s.c.scope_gid,
            s.c.status.label("last_status"),
            s.c.error.label("last_error"),
            s.c.run_id.label("last_run_id"),
            s.c.pages.label("last_pages"),
            s.c.listings.label("last_listings"),
            s.c.window_since.label("last_window_since"),
            s.c.window_until.label("last_window_until"),
            last_success.c.last_success,
            full.c.last_full_read,
        )
        .join(
            latest_run,
            sa.and_(
                s.c.scope_type == latest_run.c.scope_type,
                s.c.scope_gid == latest_run.c.scope_gid,
                s.c.run_id == latest_run.c.run_id,
            ),
        )
        .outerjoin(
            last_success,
            sa.and_(
                s.c.scope_type == last_success.c.scope_type,
                s.c.scope_gid == last_success.c.scope_gid,
            ),
        )
        .outerjoin(
            full,
            sa.and_(s.c.scope_type == full.c.scope_type, s.c.scope_gid == full.c.scope_gid),
        )
        .order_by(s.c.scope_type, s.c.scope_gid)
    )
    result = []
    for row in conn.execute(query):
        item = dict(row._mapping)
        # aggregates bypass the column type on some backends: normalise to aware UTC
        item["last_success"] = _as_utc(item["last_success"])
        item["last_full_read"] = _as_utc(item["last_full_read"])
        result.append(item)
    return result


def freshness(
    conn: sa.Connection, configured: Sequence[Scope], stale_after: dt.timedelta, now: dt.datetime,
    full_stale_after: dt.timedelta | None = None,
) -> list[dict[str, Any]]:
    """Every scope ever listed or configured: its last success, age, last outcome and
    error, its last full read, and whether it is stale: no success within `stale_after`,
    or (with `full_stale_after`) no full read within that. With no scope configured,
    every scope ever listed counts as configured."""
    scopes = {(s["scope_type"], s["scope_gid"]): s for s in scope_freshness(conn)}
    for scope in configured:  # configured but never listed: stale too
        scopes.setdefault((scope.kind, scope.gid), {
            "scope_type": scope.kind, "scope_gid": scope.gid, "last_status": None,
            "last_error": None, "last_run_id": None, "last_pages": None, "last_listings": None,
            "last_window_since": None, "last_window_until": None, "last_success": None,
            "last_full_read": None,
        })
    wanted = {(s.kind, s.gid) for s in configured} or set(scopes)
    for key, s in scopes.items():
        last, full = s["last_success"], s["last_full_read"]
        s["age_hours"] = None if last is None else round((now - last).total_seconds() / 3600, 2)
        s["full_read_stale"] = full_stale_after is not None and (
            full is None or now - full > full_stale_after)
        s["stale"] = last is None or now - last > stale_after or s["full_read_stale"]
        s["configured"] = key in wanted
    return list(scopes.values())


def _as_utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
