"""Entries' details, on the run's side: which entries to read, in batches, under the
run's budget of requests (`[details] max_requests`).

Where the list returns the details (`etl.asana.details.preflight_details`), the listings
carry them, and only entries older than a windowed run's listings read (`sync --recent`)
are read alone. Elsewhere each read is one request, so they go to the fetcher a batch at
a time, each batch once the last was answered and written:
1. with `backfill --details`, every entry of the backfill's window, whatever its age;
2. the backlog: entries never read, or whose listed content changed since, newest
   first (the entries this run inserts join it as their scopes load);
3. the refresh set: entries read before that can still change, entered in the last
   `[details] refresh_days` days in a week not approved.
What the budget leaves is the backlog of the next run; a run killed midway loses only
the batch in hand. The fetcher sends details only when no listing and no deletion
confirmation needs the turn, so they never slow a listing.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from etl.asana.client import CallStats
from etl.config import DateWindow, DetailsSettings, Scope
from etl.errors import AuthError
from etl.run.fetcher import Fetcher
from etl.run.messages import DetailRead, DetailsDone, PageRows
from etl.store import details as stored
from etl.store.runs import utcnow
from etl.wording import count

log = logging.getLogger(__name__)

#: Entries in one order to the fetcher (it reads them side by side).
BATCH = 500


class DetailsReader:
    """Orders the run's details batch by batch; `finished` once there is nothing more
    to read this run (or the budget is spent)."""

    def __init__(self, engine: sa.Engine, fetcher: Fetcher, windows: dict[Scope, DateWindow],
                 settings: DetailsSettings, list_answer: str | None, today: dt.date,
                 window: DateWindow | None = None) -> None:
        """`windows`: the days each scope's listings read; `window`: the days whose
        details are read again (`backfill --details`)."""
        self.engine = engine
        self.fetcher = fetcher
        self.scopes = list(windows)
        self.enabled = settings.entries
        self.list_answer = list_answer
        #: where the listings carry the details: entries before this day were not listed
        #: by every scope (None: all were), and are read alone
        self.before: dt.date | None = None
        if list_answer == "returned":
            bounded = [w.since for w in windows.values() if w.since is not None]
            self.before = max(bounded) if bounded else None
        #: entries are read one request each (all, or those the listings did not carry)
        self.alone = settings.entries and (list_answer != "returned" or self.before is not None)
        self.budget = settings.max_requests or None
        self.window = window
        self.refresh_since = (today - dt.timedelta(days=settings.refresh_days - 1)
                              if settings.refresh_days > 0 else None)
        self.started = utcnow()  # details read since are this run's own
        self.ordered = 0
        self.read = 0  # answers received
        self.changed = 0
        self.backlog: int | None = None  # entries still to read, at the run's end
        self.stats = CallStats()  # the details' own requests
        self.queue = _Queue(engine, self.scopes, window, self.before, self.refresh_since,
                            self.started)
        self._in_flight = False
        self._idle = False  # the last look found nothing to read
        self._listings_done = False
        self._stopped = False
        self._said: set[str] = set()

    @property
    def finished(self) -> bool:
        if not self.alone or self._stopped:
            return True
        return not self._in_flight and (self._spent() or (self._idle and self._listings_done))

    def start(self) -> None:
        """Order the first batch (entries the database held before this run)."""
        cap = "" if self.budget is None else f", {count(self.budget, 'request')} at most this run"
        if self.before is not None:
            log.info("entry details: the list returns them; entries before %s, which this "
                     "run's listings do not all read, one request each%s", self.before, cap)
        elif self.alone and self.list_answer not in (None, "unknown"):
            log.info("entry details: the list %s their fields: one request an entry%s",
                     self.list_answer, cap)
        self._order()

    def scope_closed(self, all_closed: bool) -> None:
        """A scope's entries are loaded: new ones may wait in the backlog."""
        self._listings_done = all_closed
        self._order()

    def done(self, message: DetailsDone) -> None:
        """A batch was answered (and what it found written): order the next.

        Raises:
            AuthError: Asana refused the token: the whole run stops.
        """
        self._in_flight = False
        self.stats = message.details_stats
        if isinstance(message.error, AuthError):
            raise message.error
        if message.error is not None:
            self._stopped = True
            log.warning("entry details: stopped for this run after %s: %s (the rest waits "
                        "for the next run)", count(self.read, "entry"), _reason(message.error))
            return
        self._order()

    def observe(self, batch: list[Any]) -> None:
        """Take note of a batch's answers (before they are written): entries that could
        not be read are not asked again this run; details the plan does not give are said
        once."""
        for message in batch:
            if isinstance(message, PageRows):
                self._say_missing(message.details_missing)
            elif isinstance(message, DetailRead):
                self.read += 1
                if message.gone or message.failed or message.problem is not None:
                    self._skip(message)
                self._say_missing(message.missing)

    def _skip(self, message: DetailRead) -> None:
        self.queue.skipped.add(message.gid)
        if message.problem is not None and "problem" not in self._said:
            self._said.add("problem")
            log.warning("entry details: entry %s could not be read: %s (said once; marked read "
                        "with what it had, until its content changes)", message.gid,
                        message.problem)

    def tally(self, count_backlog: bool = True) -> dict[str, int | None]:
        """What the run did with details, as `sync_runs` and the summary name it:
        requests spent, entries changed, and entries of its scopes still to read (None:
        details off, or a database that no longer answers; counted once, at the end)."""
        if count_backlog:
            self.backlog = None
            if self.enabled:
                try:
                    with self.engine.connect() as conn:
                        self.backlog = stored.backlog_size(conn, self.scopes)
                except sa.exc.SQLAlchemyError:
                    pass  # the run ends on the database's failure, in its own words
        return {"details_requests": self.stats.requests, "details_changed": self.changed,
                "details_backlog": self.backlog}

    def _say_missing(self, missing: tuple[str, ...]) -> None:
        if missing and "missing" not in self._said:
            self._said.add("missing")
            log.warning("entry details: this workspace gives no %s: they come with Asana's "
                        "Timesheets & Budgets add-on; stored as null", " or ".join(missing),
                        extra={"event": "details_missing", "fields": {"missing": list(missing)}})

    def _spent(self) -> bool:
        return self.budget is not None and self.ordered >= self.budget

    def _order(self) -> None:
        if not self.alone or self._stopped or self._in_flight or self._spent():
            return
        size = BATCH if self.budget is None else min(BATCH, self.budget - self.ordered)
        gids = self.queue.next(size)
        self._idle = not gids
        if gids:
            self.fetcher.details(gids)
            self.ordered += len(gids)
            self._in_flight = True

class _Queue:
    """Which entries to read next: those of `window`, then the backlog, then the refresh
    set (see the module), each entry once a run."""

    def __init__(self, engine: sa.Engine, scopes: list[Scope], window: DateWindow | None,
                 before: dt.date | None, refresh_since: dt.date | None,
                 started: dt.datetime) -> None:
        self.engine = engine
        self.scopes = scopes
        self.window = window
        self.before = before
        self.refresh_since = refresh_since
        self.started = started
        self.skipped: set[str] = set()  # could not be read this run: not asked again
        self._windowed: set[str] = set()  # read as `window`'s: not again as the refresh's
        self._after: dict[str, str | None] = {"window": None, "refresh": None}

    def next(self, size: int) -> list[str]:
        """The next `size` entries to read, in the order of the module's docstring."""
        gids: list[str] = []
        with self.engine.connect() as conn:
            if self.window is not None:
                gids += self._page(stored.in_window(conn, self.scopes, self.window, size,
                                                    self._after["window"]), "window")
                self._windowed.update(gids)
            if len(gids) < size:
                gids += stored.backlog(conn, self.scopes, size - len(gids),
                                       exclude=self.skipped | self._windowed,
                                       before=self.before)
            # pages of the refresh set until one leaves some to read (a page of entries
            # just read as the window's, unchanged, leaves none) or it has no more
            while len(gids) < size and self.refresh_since is not None:
                wanted, taken = size - len(gids), set(gids) | self._windowed
                page = self._page(stored.refresh_set(
                    conn, self.scopes, self.refresh_since, wanted, self._after["refresh"],
                    read_before=self.started, before=self.before), "refresh")
                gids += [g for g in page if g not in taken]
                if len(page) < wanted:
                    break
        return gids

    def _page(self, gids: list[str], cursor: str) -> list[str]:
        if gids:
            self._after[cursor] = gids[-1]
        return gids



def _reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc)
