"""run_sync / run_backfill: extract → transform → load, one committed transaction a page.

A page's rows, its scope links, its rejected records and the run's counters commit
together, so whatever was committed is consistent with the bookkeeping. A scope that
fails (403, 404, retries exhausted) is recorded as failed and the next scope goes on;
a refused token or plan (401/402) stops the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from etl import db, runs
from etl.asana import AsanaClient, Sleep
from etl.config import Scope, Settings
from etl.errors import AsanaError, AuthError, ConfigError, DatabaseError, ExitCode
from etl.extract import iter_time_entry_pages
from etl.load import Rejection, insert_rejected, link_entries, upsert_entries
from etl.runs import PageCounts
from etl.transform import RecordRejected, entry_gid, rejected_payload, to_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateWindow:
    """Inclusive bounds on `entered_on`; None means open."""

    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ConfigError(f"--since {self.since} is after --until {self.until}")

    def __contains__(self, day: dt.date) -> bool:
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)


@dataclass
class ScopeResult:
    scope: Scope
    status: str = runs.RUNNING
    counts: PageCounts = field(default_factory=PageCounts)
    pages: int = 0
    error: str | None = None
    recorded: bool = False  # has its sync_run_scopes row been written


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
            f"{c.rejected} rejected in {self.seconds:.1f} s"
        )


def prepare_database(url: str, *, migrate: bool) -> sa.Engine:
    """An engine whose schema is at head: migrated here, or checked when `migrate` is off."""
    engine = db.make_engine(url)
    db.check_connection(engine)
    if migrate:
        db.upgrade(engine)
    elif not db.is_up_to_date(engine):
        raise DatabaseError(
            f"the schema of {db.mask_url(url)} is not up to date: run `asana-etl db upgrade`"
        )
    return engine


def run_sync(
    settings: Settings,
    *,
    command: str = "sync",
    scopes: Sequence[Scope] | None = None,
    window: DateWindow = DateWindow(),
    migrate: bool = True,
    sleep: Sleep = time.sleep,
) -> RunResult:
    """Read every scope in full and load it; returns the run's result (never raises for
    a failed scope).

    Raises:
        ConfigError: no token or no scopes.
        DatabaseError: the database cannot be used.
        AuthError: Asana refused the token or the plan (the run, if it had started,
            is recorded as failed).
    """
    token = settings.require_token()
    scopes = list(scopes if scopes is not None else settings.scopes)
    if not scopes:
        raise ConfigError(f"no scopes to read: add some under [scopes] in {settings.source}")
    engine = prepare_database(settings.database_url, migrate=migrate)
    try:
        with AsanaClient(settings.asana, token, sleep=sleep) as client:
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
    """One run's state: the run row is created with the first write, not before, so a
    run that Asana refuses outright (401/402) leaves the database untouched."""

    def __init__(self, engine, client, settings, command, scopes, window) -> None:
        self.engine: sa.Engine = engine
        self.client: AsanaClient = client
        self.settings: Settings = settings
        self.command: str = command
        self.scopes: list[Scope] = scopes
        self.window: DateWindow = window
        self.run_id: int | None = None
        self.results: list[ScopeResult] = []
        self.started = time.monotonic()

    def execute(self) -> RunResult:
        log.info("%s started: %d scopes", self.command, len(self.scopes))
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

    def _ensure_run(self, conn: sa.Connection, result: ScopeResult) -> int:
        """Create the run row and this scope's row with the first write that needs them."""
        now = runs.utcnow()
        if self.run_id is None:
            self.run_id = runs.start_run(conn, self.command, len(self.scopes), now)
        if not result.recorded:
            runs.start_scope(conn, self.run_id, result.scope, now)
            result.recorded = True
        return self.run_id

    def _scope(self, scope: Scope) -> ScopeResult:
        result = ScopeResult(scope)
        stats = self.client.stats
        before = (stats.retries, stats.retry_after_seconds)
        log.info("scope %s: listing", scope)
        try:
            for page in iter_time_entry_pages(self.client, scope, self.settings.asana.page_size):
                with self.engine.begin() as conn:
                    run_id = self._ensure_run(conn, result)
                    counts = self._load_page(conn, run_id, scope, page.data)
                    runs.record_page(conn, run_id, scope, counts)
                result.pages += 1
                result.counts.add(counts)
                log.debug("scope %s: page %d, %d entries", scope, page.number, len(page.data))
        except AsanaError as exc:
            result.status, result.error = runs.FAILED, exc.message
            if isinstance(exc, AuthError):
                # the whole run stops; if nothing was written yet, nothing is
                if self.run_id is not None:
                    self._close_scope(result, before)
                raise
            log.error("scope %s failed: %s", scope, exc.message)
        except BaseException as exc:
            result.status, result.error = runs.FAILED, _describe(exc)
            if self.run_id is not None:
                self._close_scope(result, before)
            raise
        else:
            result.status = runs.SUCCEEDED
            c = result.counts
            log.info(
                "scope %s: %d pages, %d entries (%d inserted, %d updated, %d unchanged, "
                "%d rejected)",
                scope, result.pages, c.entries, c.inserted, c.updated, c.unchanged, c.rejected,
            )
        self._close_scope(result, before)
        return result

    def _close_scope(self, result: ScopeResult, before: tuple[int, float]) -> None:
        stats = self.client.stats
        with self.engine.begin() as conn:
            run_id = self._ensure_run(conn, result)
            runs.finish_scope(
                conn,
                run_id,
                result.scope,
                result.status,
                runs.utcnow(),
                retries=stats.retries - before[0],
                retry_after_seconds=round(stats.retry_after_seconds - before[1], 3),
                error=result.error,
            )

    def _load_page(
        self, conn: sa.Connection, run_id: int, scope: Scope, records: list[Any]
    ) -> PageCounts:
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
        link_entries(conn, scope, (r["gid"] for r in rows), now)
        insert_rejected(conn, run_id, scope, rejections, now)
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
        if self.run_id is None:
            return
        failed = sum(r.status == runs.FAILED for r in self.results)
        with self.engine.begin() as conn:
            runs.finish_run(conn, self.run_id, status, runs.utcnow(), scopes_failed=failed, error=error)

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
        return "interrupted"
    if isinstance(exc, AsanaError):
        return exc.message
    return f"{exc.__class__.__name__}: {exc}"
