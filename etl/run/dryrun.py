"""`asana-etl sync --dry-run`: read Asana, say what a sync would change, write nothing.

No lock, no migrations, no run row; SQLite is opened read-only, so the file stays
byte-identical. Each scope is read in the window a sync would read it in (all days, or
with `--recent` its last days unless a full read is due), asked of Asana as a sync asks
it, one scope after another. Memory holds the gids one scope's listing shows and those
of the entries that would change; a dry run is a look before a sync, not a nightly job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.asana.client import AsanaClient, Sleep
from etl.config import DateWindow, Scope, Settings
from etl.errors import AsanaError, AuthError, ConfigError, DatabaseError
from etl.asana.extract import fetch_entry, iter_time_entry_pages, preflight, still_in_scope
from etl.run import plan
from etl.run.listings import MAX_LISTING_RESTARTS, ListAsks
from etl.store import engines, migrate, runs
from etl.store.links import linked_live_gids
from etl.store.load import stored_versions
from etl.transform import RecordRejected, to_row
from etl.wording import count

log = logging.getLogger(__name__)


@dataclass
class DryRunResult:
    scopes: int = 0
    windowed: int = 0  # scopes read in a window of days, not in full
    failed: list[tuple[Scope, str]] = field(default_factory=list)
    entries: int = 0
    insert: int = 0
    update: int = 0
    unchanged: int = 0
    delete: int = 0
    unlink: int = 0
    rejected: int = 0
    seconds: float = 0.0

    def document(self) -> dict[str, Any]:
        """The dry run's findings as one JSON object (with `--log-format json`)."""
        return {
            "schema": "asana-etl/dry-run/1", "command": "sync --dry-run",
            "scopes": self.scopes, "windowed": self.windowed,
            "failed": [{"scope": str(scope), "error": error} for scope, error in self.failed],
            "entries_seen": self.entries, "insert": self.insert, "update": self.update,
            "unchanged": self.unchanged, "delete": self.delete, "unlink": self.unlink,
            "rejected": self.rejected, "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        notes = [f"{self.windowed} in a window of days"] if self.windowed else []
        notes += [f"{len(self.failed)} failed"] if self.failed else []
        details = f" ({', '.join(notes)})" if notes else ""
        return (
            f"dry run: {count(self.scopes, 'scope')}{details}, {count(self.entries, 'entry')} "
            "seen; a sync would "
            f"insert {self.insert}, update {self.update}, leave {self.unchanged} unchanged, "
            f"mark {self.delete} deleted, unlink {self.unlink} from a scope, reject "
            f"{self.rejected}; nothing was written ({self.seconds:.1f} s)"
        )


def run_dry_run(
    settings: Settings,
    *,
    scopes: Sequence[Scope] | None = None,
    window: DateWindow | None = None,
    recent_days: int | None = None,
    sleep: Sleep = time.sleep,
) -> DryRunResult:
    """What a sync (`window` None) or a backfill of `window` would change, read from
    Asana as that run would read it; nothing is written."""
    token = settings.require_token()
    scopes = list(dict.fromkeys(scopes if scopes is not None else settings.scopes))
    if not scopes:
        raise ConfigError(f"no scopes to read: add some under [scopes] in {settings.source}")
    recent = settings.sync.recent_days if recent_days is None else recent_days
    started = time.monotonic()
    engine = _open_read_only(settings.database_url)
    if window is not None:
        windows = {scope: window for scope in scopes}
    else:
        last_full = {}
        if engine is not None and recent > 0:
            with engine.connect() as conn:
                last_full = runs.last_full_reads(conn)
        windows = plan.scope_windows(scopes, recent_days=recent,
                                     full_every_days=settings.sync.full_every_days,
                                     last_full=last_full, today=runs.utcnow().date())
    result = DryRunResult(scopes=len(scopes),
                          windowed=sum(w != DateWindow() for w in windows.values()))
    # versions this dry run has already counted as inserted or updated, by gid
    counted: dict[str, str] = {}
    try:
        with AsanaClient(settings.asana, token, sleep=sleep) as client:
            preflight(client, scopes[0])
            conn = engine.connect() if engine is not None else None
            try:
                for scope in scopes:
                    try:
                        _scope(client, conn, scope, windows[scope], settings, result, counted)
                    except AuthError:
                        raise
                    except AsanaError as exc:
                        result.failed.append((scope, exc.message))
            finally:
                if conn is not None:
                    conn.rollback()
                    conn.close()
    finally:
        if engine is not None:
            engine.dispose()
    result.seconds = time.monotonic() - started
    return result


def _scope(client, conn, scope, window, settings, result, counted) -> None:
    seen: set[str] = set()
    # the list's own fields: an entry's row is made of them alone (transform.listed_content)
    fields = ListAsks().fields
    for page in iter_time_entry_pages(client, scope, settings.asana.page_size,
                                      MAX_LISTING_RESTARTS, window=window, opt_fields=fields):
        rows = []
        for raw in page.data:
            try:
                row = to_row(raw)
            except RecordRejected:
                result.entries += 1
                result.rejected += 1
                gid = raw.get("gid") if isinstance(raw, dict) else None
                if isinstance(gid, str):
                    seen.add(gid)
                continue
            if row["entered_on"] in window:  # as the sync or backfill would
                result.entries += 1
                rows.append(row)
                seen.add(row["gid"])
        stored = stored_versions(conn, {r["gid"] for r in rows}) if conn is not None else {}
        for row in rows:
            _count(result, counted, stored, row["gid"], row["content_hash"])
    if conn is None:
        return
    for gid in linked_live_gids(conn, scope, window):
        if gid in seen or gid in counted:
            continue
        entry = fetch_entry(client, gid, opt_fields=f"{fields},task")
        if entry is None:
            result.delete += 1
            counted[gid] = ""
            continue
        if not still_in_scope(scope, entry):
            result.unlink += 1
        try:
            row = to_row({k: v for k, v in entry.items() if k != "task"})  # as listed
        except RecordRejected:
            result.rejected += 1
            continue
        stored = stored_versions(conn, [gid])
        if stored.get(gid) != row["content_hash"]:
            result.update += 1
            counted[gid] = row["content_hash"]


def _count(result: DryRunResult, counted: dict[str, str], stored: dict[str, str | None],
           gid: str, content_hash: str) -> None:
    if gid in counted:
        previous: str | None = counted[gid]
    elif gid in stored:
        previous = stored[gid]
    else:
        result.insert += 1
        counted[gid] = content_hash
        return
    if previous != content_hash:
        result.update += 1
        counted[gid] = content_hash
    else:
        result.unchanged += 1


def _open_read_only(url: str) -> sa.Engine | None:
    """An engine that cannot write, or None when there is no database yet (everything
    would be inserted)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).is_file():
            return None
        import sqlite3

        uri = f"file:{Path(path).resolve()}?mode=ro"
        engine = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    else:
        engine = engines.make_engine(url)
        # PostgreSQL and MySQL: a read-only transaction, rolled back at the end
        sa.event.listen(engine, "begin", _read_only_transaction)
    engines.check_connection(engine)
    try:
        if not migrate.is_up_to_date(engine):
            if migrate.current_revision(engine) is None:
                engine.dispose()
                return None  # never migrated: nothing stored yet
            raise DatabaseError(f"the schema of {engines.mask_url(url)} is not up to date: run "
                                "`asana-etl db upgrade` first")
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read {engines.mask_url(url)}: {exc.__class__.__name__}") from None
    return engine


def _read_only_transaction(conn: sa.Connection) -> None:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
