"""run_sync / run_backfill: extract → transform → load, one committed transaction a batch.

The order of a run:
1. the database URL can be used (else exit 2, nothing read);
2. the fetcher process starts, and Asana accepts the token and the plan (one `limit=1`
   request; else exit 3, nothing written, not even a SQLite file); then the database
   is reachable (else exit 2);
3. the scopes' locks are taken (else exit 4), migrations applied, runs left `running`
   by a dead process marked `abandoned`, and this run's row written; from here every
   write goes through the session holding the locks (`etl.writer`), and a database
   that fails for good ends the run with exit 5;
4. each scope gets its window (all days; `backfill --since/--until`; or with
   `sync --recent` its last days, unless a full read is due), and the plan
   (`etl.plan`) turns the scopes into listings: date windows sized by what the
   database holds, largest first (a database with no schema yet holds nothing to plan
   by, so there reading begins before step 3's migrations);
5. the fetcher process (`etl.fetcher`) reads the listings, `[asana] concurrency`
   requests at a time, and flattens the pages; their rows flow through a pipe to this
   thread, which writes whatever is ready in one transaction: pages' rows, scope
   links, what each pass has seen, rejected records and the run's counters commit
   together, so a crash at any moment leaves the tables consistent and a re-run
   completes them;
6. a scope whose listings all completed is checked for deletions, within its window;
7. the run row gets its final status.

A scope that fails (403, 404, retries exhausted) is recorded as failed and the next
scope goes on; a refused token or plan (401/402) stops the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import sqlalchemy as sa

from etl import logcontext
from etl.asana.client import CallStats, Sleep
from etl.run import plan
from etl.run.result import RunResult, ScopeResult
from etl.store import engines, runs
from etl.store.migrate import current_revision, is_up_to_date, upgrade
from etl.config import DateWindow, Scope, Settings
from etl.run.deletions import apply_confirmations
from etl.errors import (
    AsanaError,
    AuthError,
    ConfigError,
    DatabaseError,
    DatabaseFailed,
    EtlError,
    Interrupted,
    LockError,
)
from etl.run.fetcher import (
    ConfirmDone,
    Confirmed,
    Fetcher,
    PageRows,
    ScopeListed,
)
from etl.store.links import deletion_candidates, entries_by_day, forget_seen, link_entries, mark_seen
from etl.store.load import UpsertCounts, insert_rejected, upsert_entries
from etl.store.lock import ScopeLocks, schema_lock, scope_locks
from etl.store.runs import PageCounts
from etl.transform import VALUE_COLUMNS, Rejection, RowValues
from etl.wording import count
from etl.run.writer import RowRefused, Writer, classify, describe

log = logging.getLogger(__name__)

#: Rows the loader writes in one transaction, at most (pages that are ready go together).
BATCH_ROWS = 5000
#: Seconds the loader waits for more pages before it writes a batch that is not full.
BATCH_WAIT = 0.1
#: Deletion candidates in one order to the fetcher (it confirms them side by side).
CONFIRM_BATCH = 2000


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
) -> RunResult:
    """Read every scope, load it and detect deletions; returns the run's result (never
    raises for a failed scope). `progress`, if given, is called from this thread with
    the scopes' results so far after every batch and every finished scope.

    What is read of each scope: the days of `window` if one is given (a backfill), else
    with `recent_days` (default: `[sync] recent_days`) above 0 its last days unless a
    full read is due (see `plan.scope_windows`), else every day.

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
        with Fetcher(settings.asana, token, sleep=sleep, today=today) as fetcher:
            checked = fetcher.preflight(scopes[0])
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
                run = _Run(engine, fetcher, settings, command, windows, feed, locks, listings)
                run.progress = progress
                return run.execute()
    except sa.exc.SQLAlchemyError as exc:  # before the run began, or after it ended
        raise DatabaseError(f"the database {engines.mask_url(settings.database_url)} failed: "
                            f"{describe(exc)}") from exc
    finally:
        engine.dispose()


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


def run_backfill(
    settings: Settings,
    *,
    scopes: Sequence[Scope] | None = None,
    window: DateWindow = DateWindow(),
    migrate: bool = True,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
) -> RunResult:
    """A one-off load of the scopes named (else the configured ones), limited to `window`:
    its days are asked of Asana, and only they are checked for deletions."""
    return run_sync(settings, command="backfill", scopes=scopes, window=window, migrate=migrate,
                    sleep=sleep, progress=progress)


#: Called with the scopes' results so far (and the client's retry count).
Progress = Callable[[list[ScopeResult], int], None]


def request_stop(signal_name: str, signal_number: int) -> bool:
    """Ask the run in progress, if any, to stop at its next safe point (between two
    batches, never inside a transaction). False when no run is loading: the caller may
    then interrupt at once."""
    run = _Run.current
    if run is None:
        return False
    run.interrupt = Interrupted(signal_name, signal_number)
    return True


class _Run:
    """One run, from its row in `sync_runs` to its final status.

    The fetcher process reads listings and confirms deletion candidates as this thread
    orders; this thread writes what it sends, in batches. So fetching never waits on the
    database, the database never waits on one slow request, and memory is bounded by the
    pipe between them, whatever the number of entries.
    """

    #: The run loading in this process, for `request_stop` (signals reach the process).
    current: _Run | None = None
    #: The runs this process is running (a run row with this process's pid and none of
    #: these ids was left by a run of this process that ended without its final status).
    live: set[int] = set()

    def __init__(self, engine: sa.Engine, fetcher: Fetcher, settings: Settings, command: str,
                 windows: dict[Scope, DateWindow], feed: int, locks: ScopeLocks,
                 listings: list[plan.Listing] | None = None) -> None:
        """`locks`: the run's scope locks, held; `listings`: those the fetcher was already
        given (else the run plans them)."""
        self.engine = engine
        self.listings = listings
        self.fetcher = fetcher
        self.settings = settings
        self.command = command
        self.scopes = list(windows)
        self.windows = windows
        self.feed = feed
        self.results = {scope: ScopeResult(scope, window=windows[scope]) for scope in self.scopes}
        self.stats = {scope: CallStats() for scope in self.scopes}
        self.started = time.monotonic()
        self.load_seconds = 0.0
        self.interrupt: Interrupted | None = None
        #: scope -> the last deletion candidate ordered confirmed
        self.confirming: dict[Scope, str] = {}
        self.writer = Writer(engine, locks)
        self.locks = locks
        now = runs.utcnow()
        dead, self.suspects = self._dead_runs()

        def start(conn: sa.Connection) -> int:
            if dead:
                runs.abandon(conn, dead, now)
                for run in dead:
                    forget_seen(conn, run)  # what their passes had seen
            run_id = runs.start_run(conn, command, len(self.scopes), now)
            for scope in self.scopes:
                runs.start_scope(conn, run_id, scope, now, windows[scope])
            return run_id

        self.run_id = self.writer.transaction(start)
        locks.run_id = self.run_id
        _Run.live.add(self.run_id)
        #: the scopes whose row has its final status
        self.closed: set[Scope] = set()
        if dead:
            log.warning("run%s %s left running by a process that died: marked abandoned",
                        "s" if len(dead) > 1 else "", ", ".join(f"#{i}" for i in dead))
        self.started_at = now
        self.finished_at: dt.datetime | None = None
        self.error: str | None = None
        logcontext.set_run(self.run_id)
        self.progress: Progress | None = None

    def _dead_runs(self, suspects: dict[int, float] | None = None
                   ) -> tuple[list[int], dict[int, float]]:
        """Runs left `running` whose process is gone: one of their scopes' locks is free
        (a live run holds all of its own) and the process is known to be gone. A run on
        another host (whose process cannot be looked at from here) with a lock free is
        only a suspect: it may be alive and about to find out that it lost its lock (it
        stops within writer.CHECK_SECONDS), so it is taken for gone only once it stayed
        that way for ABANDON_GRACE seconds. Returns the dead and the suspects (with when
        they were first suspected)."""
        with self.engine.connect() as conn:
            running = runs.running_runs(conn)
            running.pop(getattr(self, "run_id", None), None)
            free = [run for run, scopes in running.items()
                    if any(self.locks.free(scope) for scope in scopes)]
            processes = runs.processes(conn, free)
        dead, still = [], {}
        now = time.monotonic()
        for run in free:
            hostname, pid, started_at = processes[run]
            alive = runs.process_alive(hostname, pid, started_at)
            if alive and pid == os.getpid():
                alive = run in _Run.live
            since = (suspects or {}).get(run, now)
            if alive is False or (alive is None and now - since >= ABANDON_GRACE):
                dead.append(run)
            elif alive is None:
                still[run] = since
        return dead, still

    def execute(self) -> RunResult:
        _Run.current = self
        try:
            listings = self.listings
            if listings is None:
                listings = self._plan()
                self.fetcher.list(listings)
            windowed = sum(w != DateWindow() for w in self.windows.values())
            log.info("run #%d (%s) started: %s%s in %s, %s at a time",
                     self.run_id, self.command, count(len(self.scopes), "scope"),
                     f" ({windowed} of them in a window of days)" if windowed else "",
                     count(len(listings), "listing"),
                     count(self.settings.asana.concurrency, "request"))
            self._load_until_done()
        except BaseException as original:
            _Run.current = None
            self.fetcher.stop()
            exc = original
            if isinstance(exc, sa.exc.SQLAlchemyError):  # a read failed: the server did
                exc = self.writer.failure(exc, classify(exc) if isinstance(
                    exc, sa.exc.DBAPIError) else "other")
            # a scope whose final status did not reach its row failed with the run
            unfinished = [r for r in self.results.values() if r.scope not in self.closed]
            for result in unfinished:
                result.status, result.error = runs.FAILED, _describe(exc)
            try:
                for result in unfinished:
                    self._close_scope(result)
                self._finish(runs.FAILED, error=_describe(exc))
            except (DatabaseFailed, LockError):
                # the database does not answer: the row stays `running`, its locks are
                # free, and the next run marks it abandoned
                self.finished_at = runs.utcnow()
            # what was done before it, for the run summary of a run that stopped
            exc.result = self._result(runs.FAILED, last_success=None)
            if exc is not original:
                raise exc from original
            raise
        finally:
            _Run.live.discard(self.run_id)
        _Run.current = None
        failed = sum(r.status == runs.FAILED for r in self.results.values())
        if failed == 0:
            status = runs.SUCCEEDED
        elif failed == len(self.results):
            status = runs.FAILED
        else:
            status = runs.PARTIAL
        self._finish(status, error=f"{failed} of {count(len(self.results), 'scope')} failed"
                     if failed else None)
        return self._result(status)

    def _plan(self) -> list[plan.Listing]:
        """The listings to read, sized by what the database holds of each scope; only
        worth a query when more than one listing at a time can be fed."""
        history: dict[Scope, list[tuple[dt.date, int]]] = {}
        if self.feed > 1:
            with self.engine.connect() as conn:
                for scope in self.scopes:
                    days = entries_by_day(conn, scope, self.windows[scope])
                    if days:
                        history[scope] = days
        return plan.plan(list(self.windows.items()), history, feed=self.feed,
                         page_size=self.fetcher.page_size)

    def _load_until_done(self) -> None:
        open_scopes = len(self.scopes)
        while open_scopes:
            message = self._next_message()
            batch = []
            rows = 0
            # gather pages and confirmations into one transaction: up to BATCH_ROWS, or
            # what came within BATCH_WAIT (a batch's fixed costs, paid for a page or two,
            # were half the loader's time)
            deadline = time.monotonic() + BATCH_WAIT
            while isinstance(message, (PageRows, Confirmed)):
                if self.results[message.scope].status == runs.RUNNING:  # else: closed
                    batch.append(message)
                    rows += len(message.rows) if isinstance(message, PageRows) else 1
                if rows >= BATCH_ROWS:
                    message = None
                    break
                message = self.fetcher.receive(timeout=max(0.0, deadline - time.monotonic()))
            if batch:
                self._load(batch)
            if message is not None and self.results[message.scope].status == runs.RUNNING:
                open_scopes -= self._handle(message)
            if self.progress is not None:
                self.progress(list(self.results.values()), self.fetcher.stats.retries)

    def _next_message(self) -> Any:
        while True:
            if self.interrupt is not None:
                raise self.interrupt  # between batches: nothing is half-written
            self.writer.check()  # the lock session still answers (or the run stops)
            message = self.fetcher.receive(timeout=0.2)
            if message is not None:
                return message

    def _load(self, batch: list[PageRows | Confirmed]) -> None:
        """Write a batch of pages and confirmations, from any scopes, in one transaction."""
        started = time.monotonic()
        now = runs.utcnow()
        rows: list[tuple[Scope, RowValues]] = []
        listed: dict[Scope, list[str]] = {}  # loaded rows, for the scope links
        also: dict[Scope, list[str]] = {}  # seen but not loaded: rejected records
        rejections: dict[Scope, list[Rejection]] = {}
        answers: dict[Scope, list[tuple[str, dict[str, Any] | None]]] = {}
        pages_of: dict[Scope, int] = {}
        for message in batch:
            scope = message.scope
            if isinstance(message, Confirmed):
                answers.setdefault(scope, []).append((message.gid, message.entry))
                pages_of.setdefault(scope, 0)
                continue
            pages_of[scope] = pages_of.get(scope, 0) + 1
            rows.extend(zip(repeat(scope), message.rows))
            listed.setdefault(scope, []).extend([values[0] for values in message.rows])
            also.setdefault(scope, []).extend(message.rejected_gids)
            rejections.setdefault(scope, []).extend(message.rejections)
        def write(conn: sa.Connection) -> dict[Scope, PageCounts]:
            counts: dict[Scope, PageCounts] = {}
            upserted = upsert_entries(conn, rows, now)
            for scope in listed:
                linked_before = link_entries(conn, scope, listed[scope], now, also=also[scope],
                                             new=upserted.new)
                mark_seen(conn, self.run_id, scope, linked_before)
                insert_rejected(conn, self.run_id, scope, rejections[scope], now)
                u = upserted.counts.get(scope, UpsertCounts())
                rejected = len(rejections[scope])
                counts[scope] = PageCounts(
                    entries=u.inserted + u.updated + u.unchanged + rejected,
                    inserted=u.inserted, updated=u.updated, unchanged=u.unchanged,
                    rejected=rejected,
                )
            for scope, answered in answers.items():
                confirmed = apply_confirmations(conn, self.run_id, scope, answered, now)
                counts.setdefault(scope, PageCounts()).add(confirmed)
            runs.record_batch(conn, self.run_id,
                              {scope: (counts[scope], pages_of[scope]) for scope in pages_of})
            return counts

        while True:
            try:
                counts = self.writer.transaction(write, refusable=True)
                break
            except RowRefused as refused:
                bad = self._refused_rows(rows, now)
                if not bad:  # not a row's value after all: the batch as a whole
                    raise self.writer.failure(refused, "other") from refused
            # set them aside with the database's reason, and write the rest again
            for i, reason in bad.items():
                scope, values = rows[i]
                listed[scope].remove(values[0])
                also[scope].append(values[0])
                rejections[scope].append(Rejection(values[0], f"the database refused it: {reason}",
                                                   _capped(values[RAW])))
            log.warning("%d entr%s set aside: the database refused %s (%s)", len(bad),
                        "y" if len(bad) == 1 else "ies", "it" if len(bad) == 1 else "them",
                        next(iter(bad.values())))
            rows = [row for i, row in enumerate(rows) if i not in bad]
        self.load_seconds += time.monotonic() - started
        for scope, c in counts.items():
            result = self.results[scope]
            result.pages += pages_of[scope]
            result.counts.add(c)

    def _refused_rows(self, rows: list[tuple[Scope, RowValues]], now: dt.datetime
                      ) -> dict[int, str]:
        """The rows of a batch that the database refuses, each with its reason: found by
        halving, each half written in a transaction that is rolled back."""
        found: dict[int, str] = {}

        def search(lo: int, hi: int) -> None:
            reason = self.writer.probe(lambda conn: upsert_entries(conn, rows[lo:hi], now))
            if reason is None:
                return
            if hi - lo == 1:
                found[lo] = reason
                return
            search(lo, (lo + hi) // 2)
            search((lo + hi) // 2, hi)

        search(0, len(rows))
        return found

    def _handle(self, message: ScopeListed | ConfirmDone) -> int:
        """Act on a message of the fetcher; returns 1 when it closes a scope."""
        result = self.results[message.scope]
        self.stats[message.scope] = message.scope_stats
        if isinstance(message, ScopeListed):
            result.listings, result.restarts = message.listings, message.restarts
        if message.error is None:
            # every listing is complete and loaded: only now may what they lacked count
            # as deleted; candidates go to Asana a batch at a time, each after the last
            after = self.confirming.get(message.scope) if isinstance(message, ConfirmDone) else None
            if self._confirm(message.scope, after):
                return 0
        error = message.error
        if error is None:
            result.status = runs.SUCCEEDED
            c = result.counts
            log.info(
                "scope %s: %s in %s, %s (%d inserted, %d updated, %d unchanged, %d deleted, "
                "%d rejected)",
                result.scope, count(result.pages, "page"), count(result.listings, "listing"),
                count(c.entries, "entry"), c.inserted, c.updated, c.unchanged, c.deleted,
                c.rejected,
                extra={"event": "scope_finished", "scope": str(result.scope),
                       "fields": {"status": "succeeded", "pages": result.pages,
                                  "listings": result.listings,
                                  "requests": message.scope_stats.requests, **vars(c)}},
            )
        else:
            result.status, result.error = runs.FAILED, _describe(error)
        self._close_scope(result)
        if isinstance(error, AuthError) or not isinstance(error, (AsanaError, type(None))):
            raise error  # a refused token, or a bug: the whole run stops
        if error is not None:
            log.error("scope %s failed: %s", result.scope, result.error,
                      extra={"event": "scope_failed", "scope": str(result.scope),
                             "fields": {"error": result.error}})
        return 1

    def _confirm(self, scope: Scope, after: str | None) -> bool:
        """Order the confirmation of `scope`'s next deletion candidates (in gid order,
        after `after`, within the scope's window); False when none are left."""
        with self.engine.connect() as conn:
            gids = deletion_candidates(conn, self.run_id, scope, self.windows[scope],
                                       CONFIRM_BATCH, after)
        if not gids:
            return False
        self.confirming[scope] = gids[-1]
        self.fetcher.confirm(scope, gids)
        return True

    def _close_scope(self, result: ScopeResult) -> None:
        stats = self.stats[result.scope]
        result.retries = stats.retries
        result.requests = stats.requests

        def close(conn: sa.Connection) -> None:
            forget_seen(conn, self.run_id, result.scope)
            runs.finish_scope(
                conn,
                self.run_id,
                result.scope,
                result.status,
                runs.utcnow(),
                retries=stats.retries,
                retry_after_seconds=round(stats.retry_after_seconds, 3),
                restarts=result.restarts,
                listings=result.listings,
                requests=stats.requests,
                error=result.error,
            )

        self.writer.own_row(close)
        self.closed.add(result.scope)

    def _finish(self, status: str, error: str | None) -> None:
        failed = sum(r.status == runs.FAILED for r in self.results.values())
        self.finished_at, self.error = runs.utcnow(), error
        dead: list[int] = []
        if self.suspects and self.writer.lost is None:
            try:
                dead, self.suspects = self._dead_runs(self.suspects)
            except sa.exc.SQLAlchemyError:
                pass  # others' bookkeeping: the next run tries again

        def finish(conn: sa.Connection) -> None:
            if dead:
                runs.abandon(conn, dead, self.finished_at)
                for run in dead:
                    forget_seen(conn, run)
            runs.finish_run(conn, self.run_id, status, self.finished_at, scopes_failed=failed,
                            error=error)

        self.writer.own_row(finish)
        if dead:
            log.warning("run%s %s left running on another host, with a lock free for %.0f s: "
                        "marked abandoned", "s" if len(dead) > 1 else "",
                        ", ".join(f"#{i}" for i in dead), ABANDON_GRACE)
        total = self._totals()
        stats = self.fetcher.stats
        fields = {
            "run_id": self.run_id, "status": status, "scopes": len(self.scopes),
            "scopes_failed": failed, **vars(total),
            "seconds": round(time.monotonic() - self.started, 3),
            "load_seconds": round(self.load_seconds, 3), "requests": stats.requests,
            "retries": stats.retries, "rate_limited": stats.rate_limited,
        }
        log.info("run #%d finished: %s", self.run_id, status,
                 extra={"event": "run_finished", "fields": fields})
        logcontext.set_run(None)

    def _totals(self) -> PageCounts:
        total = PageCounts()
        for r in self.results.values():
            total.add(r.counts)
        return total

    def _result(self, status: str, last_success: float | None | bool = True) -> RunResult:
        """The run's result; `last_success` True: read from the database."""
        if last_success is True:
            with self.engine.connect() as conn:
                last_success = runs.last_success(conn, self.command)
        stats = self.fetcher.stats
        return RunResult(
            command=self.command,
            run_id=self.run_id,
            status=status,
            scopes=list(self.results.values()),
            counts=self._totals(),
            seconds=time.monotonic() - self.started,
            load_seconds=self.load_seconds,
            requests=stats.requests,
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            last_success=last_success,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
        )


#: Seconds a run left `running` on another host, with a lock free, stays a suspect
#: before a run takes it for gone (a live one notices the loss of its lock sooner).
ABANDON_GRACE = 15.0
#: Where a row's raw record sits in `RowValues`.
RAW = VALUE_COLUMNS.index("raw")


#: The most of a refused entry's record that `rejected_records.payload` keeps.
MAX_REFUSED_PAYLOAD = 1_000_000


def _capped(payload: str) -> str:
    if len(payload) <= MAX_REFUSED_PAYLOAD:
        return payload
    return payload[:MAX_REFUSED_PAYLOAD] + f"... ({len(payload)} characters in all)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    if isinstance(exc, Interrupted):
        return str(exc)
    if isinstance(exc, AsanaError):
        return exc.message
    if isinstance(exc, EtlError):  # says what happened in its own words
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"
