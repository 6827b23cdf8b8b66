"""run_sync / run_backfill: one run, from the token's check to its final status.

The order of a run, and the module that does each step:
1. the database URL can be used (else exit 2, nothing read): `etl.store.engines`;
2. the fetcher process starts (`etl.run.fetcher`), and Asana accepts the token and the
   plan (one `limit=1` request; else exit 3, nothing written, not even a SQLite file);
   then the database is reachable (else exit 2);
3. the scopes' locks are taken (else exit 4: `etl.store.lock`), migrations applied
   (`etl.store.migrate`), and the run's record begun (`etl.run.record`: runs left
   `running` by a dead process marked `abandoned`, this run's rows written); from here
   every write goes through the session holding the locks (`etl.run.writer`), and a
   database that fails for good ends the run with exit 5;
4. each scope gets its window (all days; `backfill --since/--until`; or with
   `sync --recent` its last days, unless a full read is due), and the plan
   (`etl.run.plan`) turns the scopes into listings: date windows sized by what the
   database holds, largest first (a database with no schema yet holds nothing to plan
   by, so there reading begins before step 3's migrations);
5. the fetcher process reads the listings, `[asana] concurrency` requests at a time,
   and flattens the pages (`etl.transform`); their rows flow through a pipe to this
   process, whose loader (`etl.run.loader`) writes whatever is ready in one transaction;
6. a scope whose listings all completed is checked for deletions, within its window,
   then closed (`etl.run.completion`);
7. with `[details] entries`, entries' details are read in the budget's gaps, one
   request each unless the list returns them (`etl.run.details`); with `[details]
   categories`, `timesheets` or `rates`, the listings around the entries
   (`etl.run.dimensions`);
8. the run's record gets its final status, and the run its result (`etl.run.result`).

`_Run` is only the loop that moves messages between the fetcher and those parts. A
scope that fails (403, 404, retries exhausted) is recorded as failed and the others go
on; a refused token or plan (401/402) stops the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa

from etl.asana.client import Sleep
from etl.config import DateWindow, DetailsSettings, Scope, Settings
from etl.errors import ConfigError, DatabaseError, DatabaseFailed, Interrupted, LockError
from etl.run import plan
from etl.run.completion import ScopeCompletion
from etl.run.details import DetailsReader
from etl.run.dimensions import DimensionsReader
from etl.run.fetcher import Fetcher
from etl.run.loader import BatchLoader
from etl.run.messages import ConfirmDone, DetailsDone, ResourceListed, ScopeListed
from etl.run.record import RunRecord, describe_error
from etl.run.result import RunResult, ScopeResult, totals
from etl.run.writer import Writer, classify, describe
from etl.store import engines, runs
from etl.store.links import entries_by_day
from etl.store.lock import ScopeLocks, schema_lock, scope_locks
from etl.store.migrate import current_revision, is_up_to_date, upgrade
from etl.wording import count

log = logging.getLogger(__name__)

#: Called with the scopes' results so far, the client's retry count, and the entries
#: whose details were read.
Progress = Callable[[list[ScopeResult], int, int], None]


def open_database(url: str) -> sa.Engine:
    """An engine on a database that answers (nothing is written)."""
    engine = engines.make_engine(url)
    engines.check_connection(engine)
    return engine


def migrate_or_check(engine: sa.Engine, *, migrate: bool) -> None:
    """Bring the schema to head (one process at a time: see `lock.schema_lock`), or with
    `migrate` off, insist that it is there."""
    if migrate:
        if not is_up_to_date(engine):
            with schema_lock(engine):
                upgrade(engine)  # nothing to do if another run got there first
    elif not is_up_to_date(engine):
        raise DatabaseError(
            f"the schema of {engines.mask_url(str(engine.url))} is not up to date: "
            "run `asana-etl db upgrade`"
        )


def prepare_database(url: str, *, migrate: bool) -> sa.Engine:
    """An engine whose schema is at head: migrated here, or checked when `migrate` is off."""
    engine = open_database(url)
    migrate_or_check(engine, migrate=migrate)
    return engine


def run_sync(
    settings: Settings,
    *,
    command: str = "sync",
    scopes: Sequence[Scope] | None = None,
    window: DateWindow | None = None,
    recent_days: int | None = None,
    migrate: bool = True,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
    reread_details: bool = False,
) -> RunResult:
    """Read every scope, load it and detect deletions; returns the run's result (never
    raises for a failed scope). `progress`, if given, is called from this thread with
    the scopes' results so far after every batch and every finished scope.

    What is read of each scope: the days of `window` if one is given (a backfill), else
    with `recent_days` (default: `[sync] recent_days`) above 0 its last days unless a
    full read is due (see `plan.scope_windows`), else every day. With `[details]
    entries`, entries' details too, under `[details] max_requests`; `reread_details`
    reads again those of every entry in `window`, whatever their age.

    Raises:
        ConfigError: no token or no scopes.
        DatabaseError: the database cannot be used (DatabaseFailed: it failed during
            the run; what committed stays).
        AuthError: Asana refused the token or the plan (a run already started is
            recorded as failed).
        LockError: another run holds one of the scopes (or took one after this run's
            lock connection was lost).
        FetcherDied: the fetcher process was killed.
        Interrupted: SIGTERM/SIGINT (the run is recorded as failed).
    """
    token = settings.require_token()
    scopes = list(dict.fromkeys(scopes if scopes is not None else settings.scopes))
    if not scopes:
        raise ConfigError(f"no scopes to read: add some under [scopes] in {settings.source}")
    recent = settings.sync.recent_days if recent_days is None else recent_days
    today = runs.utcnow().date()
    engine = engines.make_engine(settings.database_url)  # a bad URL fails here, before Asana
    try:
        with Fetcher(settings.asana, token, sleep=sleep, today=today,
                     list_categories=settings.details.categories) as fetcher:
            checked = fetcher.preflight(scopes[0], details=settings.details.entries)
            # only once Asana took the token and plan: connecting makes a SQLite file
            engines.check_connection(engine)
            feed = plan.feedable(settings.asana.requests_per_minute / 60.0, checked.latency,
                                 settings.asana.concurrency)
            with scope_locks(engine, scopes, command) as locks:
                listings = None
                if migrate and current_revision(engine) is None:
                    # a database with no schema yet holds nothing to plan by: reading
                    # begins while the schema is made (the rows wait in the pipe)
                    windows = {scope: window or DateWindow() for scope in scopes}
                    listings = plan.plan(list(windows.items()), {}, feed=feed,
                                         page_size=fetcher.page_size)
                    fetcher.list(listings)
                migrate_or_check(engine, migrate=migrate)
                if listings is None:
                    windows = _windows(engine, scopes, window, recent, settings, today)
                beyond = _Beyond(settings.details, checked.details, today,
                                 (window or DateWindow()) if reread_details else None)
                run = _Run(engine, fetcher, locks, command, windows, beyond, progress)
                return run.execute(
                    listings, lambda: _plan(engine, windows, feed, fetcher.page_size, today),
                    concurrency=settings.asana.concurrency)
    except sa.exc.SQLAlchemyError as exc:  # before the run began, or after it ended
        raise DatabaseError(f"the database {engines.mask_url(settings.database_url)} failed: "
                            f"{describe(exc)}") from exc
    finally:
        engine.dispose()


def run_backfill(
    settings: Settings,
    *,
    scopes: Sequence[Scope] | None = None,
    window: DateWindow = DateWindow(),
    migrate: bool = True,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
    reread_details: bool = False,
) -> RunResult:
    """A one-off load of the scopes named (else the configured ones), limited to `window`:
    its days are asked of Asana, and only they are checked for deletions; with
    `reread_details`, the details of every entry of the window are read again."""
    return run_sync(settings, command="backfill", scopes=scopes, window=window, migrate=migrate,
                    sleep=sleep, progress=progress, reread_details=reread_details)


def request_stop(signal_name: str, signal_number: int) -> bool:
    """Ask the run in progress, if any, to stop at its next safe point (between two
    batches, never inside a transaction). False when no run is loading: the caller may
    then interrupt at once."""
    run = _Run.current
    if run is None:
        return False
    run.interrupt = Interrupted(signal_name, signal_number)
    return True


def _windows(engine: sa.Engine, scopes: list[Scope], window: DateWindow | None, recent: int,
             settings: Settings, today: dt.date) -> dict[Scope, DateWindow]:
    """What the run reads of each scope: `window` (a backfill's), else with `recent`
    days each scope's last days unless a full read is due, else everything."""
    if window is not None:
        return {scope: window for scope in scopes}
    last_full = {}
    if recent > 0:
        with engine.connect() as conn:
            last_full = runs.last_full_reads(conn)
    return plan.scope_windows(scopes, recent_days=recent,
                              full_every_days=settings.sync.full_every_days,
                              last_full=last_full, today=today)


def _plan(engine: sa.Engine, windows: dict[Scope, DateWindow], feed: int,
          page_size: int, today: dt.date) -> list[plan.Listing]:
    """The listings to read, sized by what the database holds of each scope's days that
    a complete read covered; only worth a query when more than one listing at a time can
    be fed."""
    history: dict[Scope, list[tuple[dt.date, int]]] = {}
    covered: dict[Scope, list[DateWindow]] = {}
    if feed > 1:
        with engine.connect() as conn:
            covered = runs.covered_days(conn)
            for scope, window in windows.items():
                if scope in covered:
                    history[scope] = entries_by_day(conn, scope, window)
    return plan.plan(list(windows.items()), history, feed=feed, page_size=page_size,
                     covered=covered, today=today)


@dataclass(frozen=True)
class _Beyond:
    """What a run reads beyond the list: `[details]`, what the list answered to the
    details' fields, the run's day, and the window whose details are read again."""

    settings: DetailsSettings
    list_answer: str | None
    today: dt.date
    reread: DateWindow | None


class _Run:
    """One run: the loop between the fetcher's messages and the parts that act on them.

    The fetcher process reads listings and confirms deletion candidates as the run
    orders; this thread writes what it sends, in batches. So fetching never waits on the
    database, the database never waits on one slow request, and memory is bounded by the
    pipe between them, whatever the number of entries.
    """

    #: The run loading in this process, for `request_stop` (signals reach the process).
    current: ClassVar[_Run | None] = None

    def __init__(self, engine: sa.Engine, fetcher: Fetcher, locks: ScopeLocks, command: str,
                 windows: dict[Scope, DateWindow], beyond: _Beyond,
                 progress: Progress | None) -> None:
        """`locks`: the run's scope locks, held."""
        self.started = time.monotonic()
        self.fetcher = fetcher
        self.command = command
        self.progress = progress
        self.interrupt: Interrupted | None = None
        self.writer = Writer(engine, locks)
        scopes = list(windows)
        self.details = DetailsReader(engine, fetcher, windows, beyond.settings,
                                     beyond.list_answer, beyond.today, beyond.reread)
        self.dimensions = DimensionsReader(engine, fetcher, self.writer, scopes,
                                           beyond.settings, beyond.today)
        self.record = RunRecord(engine, self.writer, locks, command)
        run_id = self.record.start(windows, details_list=beyond.list_answer)
        self.results = {scope: ScopeResult(scope, window=window)
                        for scope, window in windows.items()}
        self.loader = BatchLoader(self.writer, run_id)
        self.scopes = ScopeCompletion(engine, fetcher, self.record, windows, self.results)

    def execute(self, listings: list[plan.Listing] | None,
                planner: Callable[[], list[plan.Listing]], *, concurrency: int) -> RunResult:
        """Read `listings` (None: those `planner` makes, given to the fetcher here; else
        it has them already) and load them; the run's result."""
        _Run.current = self
        try:
            if listings is None:
                listings = planner()
                self.fetcher.list(listings)
            windowed = sum(r.window != DateWindow() for r in self.results.values())
            log.info("run #%d (%s) started: %s%s in %s, %s at a time",
                     self.record.run_id, self.command, count(len(self.results), "scope"),
                     f" ({windowed} of them in a window of days)" if windowed else "",
                     count(len(listings), "listing"), count(concurrency, "request"))
            log.debug("the fetcher process started by %s", self.fetcher.method,
                      extra={"event": "fetcher_started", "fields": {"method": self.fetcher.method,
                                                                    "pid": self.fetcher.pid}})
            self.details.start()
            self.dimensions.start()
            self._loop()
        except BaseException as original:
            _Run.current = None
            try:
                exc = self._stopped(original)
            finally:
                self.record.ended()
            if exc is not original:
                raise exc from original
            raise
        _Run.current = None
        failed = sum(r.status == runs.FAILED for r in self.results.values())
        status = (runs.SUCCEEDED if not failed else
                  runs.FAILED if failed == len(self.results) else runs.PARTIAL)
        try:
            self._finish(status, f"{failed} of {count(len(self.results), 'scope')} failed"
                         if failed else None)
        finally:
            self.record.ended()
        return self._result(status, self.record.last_success())

    def _loop(self) -> None:
        open_scopes = len(self.results)
        while open_scopes or not self.details.finished or not self.dimensions.finished:
            message = self._next_message()
            batch, message = self.loader.gather(message, self.fetcher.receive,
                                                self.scopes.is_open)
            if batch:
                self._load(batch)
            if isinstance(message, (ScopeListed, ConfirmDone)) and self.scopes.is_open(message.scope):
                if self.scopes.handle(message):
                    open_scopes -= 1
                    self.details.scope_closed(all_closed=not open_scopes)
                    self.dimensions.scope_closed(all_closed=not open_scopes)
            elif isinstance(message, DetailsDone):
                self.details.done(message)
            elif isinstance(message, ResourceListed):
                self.dimensions.listed(message)
            if self.progress is not None:
                self.progress(list(self.results.values()), self.fetcher.stats.retries,
                              self.details.read)

    def _load(self, batch: list[Any]) -> None:
        self.details.observe(batch)
        self.dimensions.observe(batch)
        loaded = self.loader.load(batch)
        loaded.add_to(self.results)
        self.details.changed += loaded.details_changed

    def _next_message(self) -> Any:
        while True:
            if self.interrupt is not None:
                raise self.interrupt  # between batches: nothing is half-written
            self.writer.check()  # the lock session still answers (or the run stops)
            message = self.fetcher.receive(timeout=0.2)
            if message is not None:
                return message

    def _stopped(self, original: BaseException) -> BaseException:
        """The run stops on `original`: the fetcher stops, every scope still open fails
        with it, and the run is recorded as failed if the database still answers.
        Returns what to raise, carrying what the run did so far as `result`."""
        self.fetcher.stop()
        exc = original
        if isinstance(exc, sa.exc.SQLAlchemyError):  # a read failed: the server did
            exc = self.writer.failure(exc, classify(exc) if isinstance(
                exc, sa.exc.DBAPIError) else "other")
        try:
            for result in self.scopes.fail_unfinished(exc):
                self.scopes.close(result)
            self._finish(runs.FAILED, error=describe_error(exc))
        except (DatabaseFailed, LockError):
            # the database does not answer: the row stays `running`, its locks are
            # free, and the next run marks it abandoned
            self.record.stopped()
        exc.result = self._result(runs.FAILED, None)
        return exc

    def _finish(self, status: str, error: str | None) -> None:
        failed = sum(r.status == runs.FAILED for r in self.results.values())
        self.record.finish(status, error, failed, {**self.details.tally(), **self.dimensions.tally(
            self.fetcher.stats.requests, self.details.stats.requests)})
        log.info("run #%d finished: %s", self.record.run_id, status, extra={
            "event": "run_finished", "fields": self._result(status, None).log_fields()})

    def _result(self, status: str, last_success: float | None) -> RunResult:
        stats = self.fetcher.stats
        return RunResult(
            command=self.command, run_id=self.record.run_id, status=status,
            scopes=list(self.results.values()), counts=totals(self.results.values()),
            seconds=time.monotonic() - self.started, load_seconds=self.loader.load_seconds,
            requests=stats.requests, retries=stats.retries, rate_limited=stats.rate_limited,
            last_success=last_success, started_at=self.record.started_at,
            finished_at=self.record.finished_at, error=self.record.error,
            **self.details.tally(count_backlog=False), requests_by_kind=self.dimensions.by_kind(
                stats.requests, self.details.stats.requests),
        )
