"""run_sync / run_backfill: extract → transform → load, one committed transaction a page.

The order of a run:
1. the database is reachable (else exit 2, nothing read);
2. Asana accepts the token and the plan (one `limit=1` request; else exit 3, nothing
   written);
3. the run lock is taken (else exit 4), migrations applied, runs left `running` by a
   dead process marked `abandoned`, and this run's row written;
4. each scope is listed in full: a page's rows, its scope links, what the pass has seen,
   its rejected records and the run's counters commit together, so a crash at any
   moment leaves the tables consistent and a re-run completes them;
5. a scope whose listing completed is checked for deletions;
6. the run row gets its final status.

A scope that fails (403, 404, retries exhausted) is recorded as failed and the next
scope goes on; a refused token or plan (401/402) stops the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from etl import db, runs
from etl.asana import AsanaClient, Sleep
from etl.config import DateWindow, Scope, Settings
from etl.deletions import detect_deletions
from etl.errors import AsanaError, AuthError, ConfigError, DatabaseError, ExitCode, Interrupted
from etl.extract import ENTRIES_PATH, iter_time_entry_pages, scope_params
from etl.load import Rejection, forget_seen, insert_rejected, link_entries, mark_seen, upsert_entries
from etl.lock import run_lock
from etl.runs import PageCounts
from etl.transform import RecordRejected, entry_gid, rejected_payload, to_row

log = logging.getLogger(__name__)

#: How often one scope's listing may restart after an expired offset before it fails.
MAX_LISTING_RESTARTS = 3


@dataclass
class ScopeResult:
    scope: Scope
    status: str = runs.RUNNING
    counts: PageCounts = field(default_factory=PageCounts)
    pages: int = 0
    restarts: int = 0
    error: str | None = None


@dataclass
class RunResult:
    command: str
    run_id: int | None
    status: str
    scopes: list[ScopeResult]
    counts: PageCounts
    seconds: float

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.status == runs.SUCCEEDED else ExitCode.SCOPE_FAILED

    @property
    def failed_scopes(self) -> list[ScopeResult]:
        return [s for s in self.scopes if s.status == runs.FAILED]

    def summary(self) -> str:
        c = self.counts
        failed = len(self.failed_scopes)
        return (
            f"{self.command} {self.status}: {len(self.scopes)} scopes"
            f"{f' ({failed} failed)' if failed else ''}, {c.entries} entries seen, "
            f"{c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged, "
            f"{c.deleted} deleted, {c.rejected} rejected in {self.seconds:.1f} s"
        )


def open_database(url: str) -> sa.Engine:
    """An engine on a database that answers (nothing is written)."""
    engine = db.make_engine(url)
    db.check_connection(engine)
    return engine


def migrate_or_check(engine: sa.Engine, *, migrate: bool) -> None:
    """Bring the schema to head, or with `migrate` off, insist that it is there."""
    if migrate:
        db.upgrade(engine)
    elif not db.is_up_to_date(engine):
        raise DatabaseError(
            f"the schema of {db.mask_url(str(engine.url))} is not up to date: "
            "run `asana-etl db upgrade`"
        )


def prepare_database(url: str, *, migrate: bool) -> sa.Engine:
    """An engine whose schema is at head: migrated here, or checked when `migrate` is off."""
    engine = open_database(url)
    migrate_or_check(engine, migrate=migrate)
    return engine


def preflight(client: AsanaClient, scope: Scope) -> None:
    """One `limit=1` request, so that a refused token or plan stops the run before it
    writes anything.

    Raises:
        AuthError: 401 or 402. Any other failure is left for the scope's own listing.
    """
    try:
        client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1, "opt_fields": "gid"})
    except AuthError:
        raise
    except AsanaError as exc:
        log.debug("preflight on scope %s: %s (left to the listing)", scope, exc.message)


def run_sync(
    settings: Settings,
    *,
    command: str = "sync",
    scopes: Sequence[Scope] | None = None,
    window: DateWindow = DateWindow(),
    migrate: bool = True,
    sleep: Sleep = time.sleep,
) -> RunResult:
    """Read every scope in full, load it and detect deletions; returns the run's result
    (never raises for a failed scope).

    Raises:
        ConfigError: no token or no scopes.
        DatabaseError: the database cannot be used.
        AuthError: Asana refused the token or the plan (a run already started is
            recorded as failed).
        LockError: another run holds the lock.
        Interrupted: SIGTERM/SIGINT (the run is recorded as failed).
    """
    token = settings.require_token()
    scopes = list(dict.fromkeys(scopes if scopes is not None else settings.scopes))
    if not scopes:
        raise ConfigError(f"no scopes to read: add some under [scopes] in {settings.source}")
    engine = open_database(settings.database_url)
    try:
        with AsanaClient(settings.asana, token, sleep=sleep) as client:
            preflight(client, scopes[0])
            with run_lock(engine, command):
                migrate_or_check(engine, migrate=migrate)
                return _Run(engine, client, settings, command, scopes, window).execute()
    finally:
        engine.dispose()


def run_backfill(
    settings: Settings,
    *,
    scopes: Sequence[Scope] | None = None,
    window: DateWindow = DateWindow(),
    migrate: bool = True,
    sleep: Sleep = time.sleep,
) -> RunResult:
    """A one-off load of the scopes named (else the configured ones), limited to `window`."""
    return run_sync(
        settings, command="backfill", scopes=scopes, window=window, migrate=migrate, sleep=sleep
    )


class _Run:
    """One run, from its row in `sync_runs` to its final status."""

    def __init__(self, engine: sa.Engine, client: AsanaClient, settings: Settings, command: str,
                 scopes: list[Scope], window: DateWindow) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings
        self.command = command
        self.scopes = scopes
        self.window = window
        self.results: list[ScopeResult] = []
        self.started = time.monotonic()
        with engine.begin() as conn:
            now = runs.utcnow()
            abandoned = runs.abandon_running(conn, now)
            if abandoned:
                log.warning("runs %s were left running by a dead process: marked abandoned",
                            ", ".join(f"#{i}" for i in abandoned))
            forget_seen(conn)  # leftovers of those runs
            self.run_id = runs.start_run(conn, command, len(scopes), now)

    def execute(self) -> RunResult:
        log.info("run #%d (%s) started: %d scopes", self.run_id, self.command, len(self.scopes))
        try:
            for scope in self.scopes:
                self.results.append(self._scope(scope))
        except BaseException as exc:
            self._finish(runs.FAILED, error=_describe(exc))
            raise
        failed = sum(r.status == runs.FAILED for r in self.results)
        if failed == 0:
            status = runs.SUCCEEDED
        elif failed == len(self.results):
            status = runs.FAILED
        else:
            status = runs.PARTIAL
        self._finish(status, error=f"{failed} of {len(self.results)} scopes failed" if failed else None)
        return self._result(status)

    def _scope(self, scope: Scope) -> ScopeResult:
        result = ScopeResult(scope)
        stats = self.client.stats
        before = (stats.retries, stats.retry_after_seconds)
        with self.engine.begin() as conn:
            runs.start_scope(conn, self.run_id, scope, runs.utcnow())
        log.info("scope %s: listing", scope)
        try:
            pages = iter_time_entry_pages(
                self.client, scope, self.settings.asana.page_size, MAX_LISTING_RESTARTS
            )
            for page in pages:
                with self.engine.begin() as conn:
                    counts = self._load_page(conn, scope, page.data)
                    runs.record_page(conn, self.run_id, scope, counts)
                result.pages += 1
                result.restarts = page.restart
                result.counts.add(counts)
                log.debug("scope %s: page %d, %d entries", scope, page.number, len(page.data))
            # the listing is complete: only now may anything it lacked count as deleted
            result.counts.add(detect_deletions(self.engine, self.client, self.run_id, scope,
                                               self.window))
        except AsanaError as exc:
            result.status, result.error = runs.FAILED, exc.message
            self._close_scope(result, before)
            if isinstance(exc, AuthError):
                raise
            log.error("scope %s failed: %s", scope, exc.message)
            return result
        except BaseException as exc:
            result.status, result.error = runs.FAILED, _describe(exc)
            self._close_scope(result, before)
            raise
        result.status = runs.SUCCEEDED
        self._close_scope(result, before)
        c = result.counts
        log.info(
            "scope %s: %d pages, %d entries (%d inserted, %d updated, %d unchanged, "
            "%d deleted, %d rejected)",
            scope, result.pages, c.entries, c.inserted, c.updated, c.unchanged, c.deleted,
            c.rejected,
        )
        return result

    def _close_scope(self, result: ScopeResult, before: tuple[int, float]) -> None:
        stats = self.client.stats
        with self.engine.begin() as conn:
            if result.status == runs.FAILED:
                forget_seen(conn, self.run_id, result.scope)
            runs.finish_scope(
                conn,
                self.run_id,
                result.scope,
                result.status,
                runs.utcnow(),
                retries=stats.retries - before[0],
                retry_after_seconds=round(stats.retry_after_seconds - before[1], 3),
                restarts=result.restarts,
                error=result.error,
            )

    def _load_page(self, conn: sa.Connection, scope: Scope, records: list[Any]) -> PageCounts:
        now = runs.utcnow()
        rows, rejections = [], []
        for raw in records:
            try:
                row = to_row(raw)
            except RecordRejected as exc:
                rejections.append(Rejection(entry_gid(raw), str(exc), rejected_payload(raw)))
                continue
            if row["entered_on"] not in self.window:
                continue  # backfill --since/--until: not this run's business
            rows.append(row)
        upserted = upsert_entries(conn, rows, now)
        gids = [r["gid"] for r in rows]
        link_entries(conn, scope, gids, now)
        # a rejected record with a usable gid was still seen: it must not look deleted
        mark_seen(conn, self.run_id, scope, gids + [r.entry_gid for r in rejections if r.entry_gid])
        insert_rejected(conn, self.run_id, scope, rejections, now)
        for r in rejections:
            log.warning("scope %s: rejected entry %s: %s", scope, r.entry_gid or "(no gid)", r.reason)
        return PageCounts(
            entries=len(rows) + len(rejections),
            inserted=upserted.inserted,
            updated=upserted.updated,
            unchanged=upserted.unchanged,
            rejected=len(rejections),
        )

    def _finish(self, status: str, error: str | None) -> None:
        failed = sum(r.status == runs.FAILED for r in self.results)
        with self.engine.begin() as conn:
            runs.finish_run(conn, self.run_id, status, runs.utcnow(), scopes_failed=failed,
                            error=error)
        log.info("run #%d finished: %s", self.run_id, status)

    def _result(self, status: str) -> RunResult:
        total = PageCounts()
        for r in self.results:
            total.add(r.counts)
        return RunResult(
            command=self.command,
            run_id=self.run_id,
            status=status,
            scopes=self.results,
            counts=total,
            seconds=time.monotonic() - self.started,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    if isinstance(exc, Interrupted):
        return str(exc)
    if isinstance(exc, AsanaError):
        return exc.message
    return f"{exc.__class__.__name__}: {exc}"
