"""The listing reader: a listing's pages, one request at a time, as the scheduler hands
its turns out; splits, expired offsets, and the end of a scope.

A listing whose first page says more follow is split into date windows while fewer
listings are open than the budget can feed (`plan.feedable`): that page is dropped, and
its windows read it again. A scope is listed when all its listings are; the first that
fails fails the scope and cancels the others, and an expired offset restarts only its
own listing. Each page is flattened here (`etl.transform`), and only the entries of the
listing's own window are kept: the windows of a scope partition its days.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import pickle
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from etl import logcontext
from etl.asana.client import AsanaClient, CallStats
from etl.asana.details import DETAIL_OPT_FIELDS
from etl.asana.extract import OPT_FIELDS, expired, pagination
from etl.config import AsanaSettings, DateWindow, Scope
from etl.dimensions import entry_categories
from etl.errors import AsanaError, OffsetExpiredError
from etl.run import plan
from etl.run.messages import PageRows, ScopeListed
from etl.run.plan import Listing
from etl.run.scheduler import ListingTask, RequestScheduler, ScopeProgress
from etl.transform import (
    RecordRejected,
    Rejection,
    RowValues,
    entry_gid,
    day_of,
    listed_content,
    listed_row,
    rejected_payload,
    to_details,
)
from etl.wording import count

log = logging.getLogger(__name__)

#: How often one listing may restart after an expired offset before its scope fails.
MAX_LISTING_RESTARTS = 3
#: Request latencies the feed estimate looks at (the median of the latest).
LATENCY_SAMPLES = 32


@dataclass(frozen=True)
class ListAsks:
    """What listings ask for beyond the list's own fields: the entries' details (where the
    list returns them), their categories (where they are wanted)."""

    details: bool = False
    categories: bool = False

    @property
    def fields(self) -> str:
        """The `opt_fields` a listing asks for."""
        fields = DETAIL_OPT_FIELDS if self.details else OPT_FIELDS
        return fields + ",categories" if self.categories else fields


@dataclass(eq=False)
class ScopeTasks:
    """The listings of one scope: how many are still open, how many ended in full, and
    what its requests cost."""

    scope: Scope
    open: int = 0
    listed: int = 0
    restarts: int = 0
    error: BaseException | None = None
    stats: CallStats = field(default_factory=CallStats)


class ListingReader:
    """Reads listings for the fetcher process; `send` posts a message to the run."""

    def __init__(self, settings: AsanaSettings, client: AsanaClient,
                 scheduler: RequestScheduler, send: Callable[[Any], None], *,
                 page_size: int, today: dt.date) -> None:
        self.settings = settings
        self.client = client
        self.scheduler = scheduler
        self.send = send
        self.page_size = page_size
        self.today = today
        self.scopes: dict[Scope, ScopeTasks] = {}
        self.inclusive = False  # proved (`extract.bounds_inclusive`): windows asked exactly
        self.splits = True  # off if the server turns out to ignore the date bounds
        self.asks = ListAsks()  # what listings ask for beyond the list's own fields
        self._lock = threading.Lock()
        #: how long the latest requests took: what the feed estimate goes by
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)

    def add(self, listings: list[Listing]) -> None:
        """Read these listings (each scope's, all at once, so that the largest go first)."""
        windows = collections.Counter(x.scope for x in listings)
        for scope, n in windows.items():
            self.scopes[scope] = ScopeTasks(scope, open=n)
            say_planned(scope, [x for x in listings if x.scope == scope])
        progress = {scope: ScopeProgress() for scope in windows}
        self.scheduler.add(ListingTask.of(x, progress[x.scope]) for x in listings)

    def stats_of(self, scope: Scope) -> CallStats:
        """The calls made for `scope` so far (its listings and its confirmations)."""
        return self.scopes[scope].stats

    def read(self, listing: ListingTask) -> None:
        """The next page of `listing` (its first, if it has none yet)."""
        tasks = self.scopes[listing.scope]
        if tasks.error is not None:  # another listing of the scope failed
            self._end(listing, tasks, listed=False)
            return
        if listing.pages is None:
            listing.pages = pagination(listing.scope, listing.window, self.page_size,
                                       self.inclusive, self.asks.fields)
        started = time.monotonic()
        try:
            page = self.client.next_page(listing.pages, tasks.stats)
        except OffsetExpiredError as exc:
            self._restart(listing, tasks, exc)
            return
        except BaseException as exc:  # reported to the run, which decides
            self._fail(listing, tasks, portable(exc))
            return
        self.latencies.append(time.monotonic() - started)
        try:
            days = _entry_days(page.data)
            if page.number == 1:
                listing.in_order = plan.in_order_made(
                    [raw["gid"] for raw in page.data if isinstance(raw, dict)
                     and isinstance(raw.get("gid"), str)])
                if not listing.pages.done and self._split(listing, days):
                    return
            listing.advanced(days, self.today)
            rows = self._flatten(listing, page.data, page.number)
        except Exception as exc:  # a fault here fails its scope; it never stalls the run
            self._fail(listing, tasks, portable(exc))
            return
        self.send(rows)
        log.debug("scope %s: page %d, %d entries", listing.scope, page.number, len(page.data))
        if listing.pages.done:
            self._end(listing, tasks, listed=True)
        else:
            self.scheduler.put_back(listing)

    def _restart(self, listing: ListingTask, tasks: ScopeTasks, exc: OffsetExpiredError) -> None:
        """Asana no longer takes the listing's offset: read it again from its first page,
        or after `MAX_LISTING_RESTARTS` fail its scope."""
        if listing.restarts == MAX_LISTING_RESTARTS:
            self._fail(listing, tasks, expired(exc, MAX_LISTING_RESTARTS))
            return
        log.warning("scope %s: offset expired, restarting the listing of %s: %s",
                    listing.scope, days_of(listing.window), exc.message)
        listing.restarts += 1
        with self._lock:
            tasks.restarts += 1
        listing.pages = None
        self.scheduler.put_back(listing)

    def _split(self, listing: ListingTask, days: list[dt.date]) -> bool:
        """Split a listing whose first page (its entries' `days`) says more follow, if
        `split_windows` finds it worth it; True if it was (its page is dropped then)."""
        asked = plan.widened(listing.window)
        if not self.splits or not days or self._bounds_ignored(
                listing, next((d for d in days if d not in asked), None)):
            return False  # (a page with entries the dates exclude is proof enough)
        feed = plan.feedable(self.settings.requests_per_minute / 60.0,
                             statistics.median(self.latencies), self.settings.concurrency)
        windows = split_windows(listing, days, feed, self.scheduler, self.today)
        if not windows:
            return False
        tasks = self.scopes[listing.scope]
        with self._lock:
            tasks.open += len(windows) - 1
        self.scheduler.add(listing.pieces(windows), replacing=listing)
        log.info("scope %s: %s split into %d windows", listing.scope, days_of(listing.window),
                 len(windows), extra={"event": "listing_split", "fields": {
                     "windows": [days_of(w) for w in windows]}})
        return True

    def _end(self, listing: ListingTask, tasks: ScopeTasks, *, listed: bool) -> None:
        """One of the scope's listings ended; the last one reports the scope listed."""
        self.scheduler.ended(listing)
        with self._lock:
            tasks.open -= 1
            tasks.listed += listed
            last = tasks.open == 0
        if last:
            self.send(ScopeListed(tasks.scope, tasks.error, dataclasses.replace(tasks.stats),
                                  listings=tasks.listed, restarts=tasks.restarts))

    def _fail(self, listing: ListingTask, tasks: ScopeTasks, error: BaseException) -> None:
        """A listing failed: so does its scope; its other listings end unread."""
        with self._lock:
            first = tasks.error is None
            tasks.error = tasks.error or error
        for cancelled in self.scheduler.cancel(listing.scope):
            self._end(cancelled, tasks, listed=False)
        self._end(listing, tasks, listed=False)
        if first:
            log.debug("scope %s: the listing of %s failed", listing.scope, days_of(listing.window))

    def _flatten(self, listing: ListingTask, data: list[Any], number: int) -> PageRows:
        """A page as rows, keeping the entries of the listing's own window; an entry
        outside even the days asked for means the server ignores the dates."""
        page, outside = flatten(listing.scope, listing.window, listing.restarts, data, number,
                                details=self.asks.details, categories=self.asks.categories)
        self._bounds_ignored(listing, outside)
        return page

    def _bounds_ignored(self, listing: ListingTask, outside: dt.date | None) -> bool:
        """An entry of a day outside even the days asked for (`outside`): the server
        ignores the date bounds, so split listings would each read everything; split no
        more. Whether it is so."""
        if outside is None:
            return False
        with self._lock:
            said, self.splits = not self.splits, False
        if not said:
            log.warning("scope %s: Asana returned an entry of %s to a listing of %s: it seems "
                        "to ignore the date bounds, so no listing is split any further",
                        listing.scope, outside, days_of(listing.window))
        return True


def say_planned(scope: Scope, listings: list[Listing]) -> None:
    """Log what the plan expects of a scope's listings: the pages of the ones the
    database sized, and no more (what a page tells is too coarse to be said)."""
    sized = [x.pages for x in listings if x.pages is not None]
    expected = ""
    if sized:
        pages = "about " + count(round(sum(sized)), "page")
        unknown = len(listings) - len(sized)
        expected = f" ({pages})" if not unknown else (
            f" ({pages} in {len(sized)}, {unknown} of unknown size)")
    with logcontext.scope_context(scope):
        log.info("scope %s: listing%s%s", scope,
                 f" in {len(listings)} windows" if len(listings) > 1 else "", expected,
                 extra={"event": "listing_planned", "fields": {
                     "windows": len(listings), "sized_windows": len(sized),
                     "estimated_pages": round(sum(sized)) if sized else None}})


def split_windows(listing: ListingTask, days: list[dt.date], feed: int,
                  scheduler: RequestScheduler, today: dt.date) -> list[DateWindow]:
    """The windows to split `listing` into (none: not worth it), from the days of its
    first page's entries, when `feed` listings at once keep the budget busy, and from
    the other listings open in `scheduler`: the pages they have left, and whether some
    of them have not told their size yet (`RequestScheduler.work_left`).

    A listing that is not sized by the database takes the size its page tells, if it
    tells one; it is then cut into pieces of about its share of the run (`plan.pieces`),
    so that none ends long after the others. While listings are still being probed, or
    when its page tells no size, a listing is cut only while fewer than `feed` are open,
    into twice as many pieces as would fill the budget (pieces of a listing whose size
    is unknown are cut where the page's days tell they hold about equal entries)."""
    estimate = plan.estimate_pages(listing.window, days, listing.in_order, today,
                                   listing.per_day)
    if estimate is not None and not listing.planned:
        listing.estimate = estimate
    size = listing.estimate if listing.planned else estimate
    others, probing = scheduler.work_left(listing)
    idle = feed - scheduler.open
    if size is None or probing:
        if idle <= 0:
            return []
        parts = 2 * (idle + 1)
        if size is not None:
            parts = min(parts, int(size // plan.MIN_PIECE_PAGES))
    else:
        parts = plan.pieces(size, others, feed)
    windows = plan.split(listing.window, days, listing.in_order, parts, today) if parts >= 2 else []
    return windows if len(windows) >= 2 else []


def flatten(scope: Scope, window: DateWindow, restarts: int, data: list[Any], number: int,
            details: bool = False, categories: bool = False) -> tuple[PageRows, dt.date | None]:
    """Page `number` of a listing of `window` as rows (the entries of its own days; the
    others belong to another listing, or are outside the run's window), with the records
    that fail validation set aside, and with `details` their details; and the day of an
    entry outside even the days the listing asked for (see `plan.widened`), if one came."""
    page = PageRows(scope, number, restarts, [], [], [])
    rows: list[RowValues] = []
    rejections: list[Rejection] = []
    rejected: list[str] = []
    outside = None
    asked = plan.widened(window)
    since, until = window.since, window.until
    for raw in data:
        try:
            values, day = listed_row(listed_content(raw))
        except RecordRejected as exc:
            gid = entry_gid(raw)
            rejections.append(Rejection(gid, str(exc), rejected_payload(raw)))
            log.warning("scope %s: rejected entry %s: %s", scope, gid or "(no gid)", exc)
            if gid:  # seen all the same: it must not look deleted
                rejected.append(gid)
            continue
        if (since is None or day >= since) and (until is None or day <= until):  # in window
            rows.append(values)
            if details:
                _add_details(page, values[0], raw)
            if categories:
                _add_categories(page, values[0], raw)
        elif outside is None and day not in asked:
            outside = day
    page.rows, page.rejections, page.rejected_gids = rows, rejections, rejected
    return page, outside


def _add_categories(page: PageRows, gid: str, raw: dict[str, Any]) -> None:
    """The categories the entry carries (none said: the add-on is missing, nothing to
    link; a malformed list: the links stay as they were)."""
    try:
        carried = entry_categories(raw)
    except RecordRejected as exc:
        log.warning("scope %s: categories of entry %s set aside: %s", page.scope, gid, exc)
        return
    if carried is not None:
        page.categories.append((gid, carried))


def _add_details(page: PageRows, gid: str, raw: dict[str, Any]) -> None:
    """The entry's details, from a list that returns them (one that fails validation
    stays unread, as the loaded entry's details were)."""
    try:
        values, missing = to_details(raw)
    except RecordRejected as exc:
        log.warning("scope %s: details of entry %s set aside: %s", page.scope, gid, exc)
        return
    page.details.append((gid, values))
    if missing and not page.details_missing:
        page.details_missing = missing


def _entry_days(data: list[Any]) -> list[dt.date]:
    """The `entered_on` days of a page's entries, in page order (invalid ones left out)."""
    days = []
    for raw in data:
        day = day_of(raw.get("entered_on")) if isinstance(raw, dict) else None
        if day is not None:
            days.append(day)
    return days


def days_of(window: DateWindow) -> str:
    """'2026-01-01..2026-03-31', '..2026-03-31', '2026-01-01..' or 'all days'."""
    if window.since is None and window.until is None:
        return "all days"
    return f"{window.since or ''}..{window.until or ''}"


def portable(exc: BaseException) -> BaseException:
    """`exc` if it survives the pipe, else a RuntimeError that says what it was."""
    if isinstance(exc, AsanaError):
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(exc))
            return exc
    log.error("fetcher: %s", exc, exc_info=exc)
    return RuntimeError(f"{exc.__class__.__name__}: {exc}")
