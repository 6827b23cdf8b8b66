"""The fetcher: a run's reading side, in a process of its own.

At Asana's speed a sync waits on the network; against a fast server it is bound by CPU,
and reading (HTTP, JSON, flattening) costs about as much as writing. In one process the
GIL makes the two take turns on one core. So a run forks a fetcher process that owns
the Asana client (its connection pool, rate limiter and retry policy) and `[asana]
concurrency` worker threads. It reads listings and confirms deletion candidates as the
run orders, flattens every page into row values, and sends them (pickled, several at a
time) through a bounded outbox and a pipe to the run's process, which only writes. A
loader that falls behind fills the outbox and then blocks the workers, so memory stays
flat.

Requests, not listings, are what the workers take in turn: each worker, once the rate
limiter lets it send, sends the next request of the listing that looks largest (its
planned or estimated pages still to read), so that the longest listings run at full
sequential speed and none ends alone at the end of the run; listings not yet begun and
of unknown size go first (their first page is how their size is learnt), deletion
confirmations last (they are single requests, the best filler there is). A listing
whose offset has waited long goes before all, so that it does not expire.

A listing whose first page says more follow is split into date windows while fewer
listings are in flight than the budget can feed (`plan.feedable`): that page is
dropped, and its windows read it again. A scope is listed when all its listings are;
the first that fails fails the scope and cancels the others, and an expired offset
restarts only its own listing.

Orders go one way (`list`, `confirm`), messages the other (`PageRows`, `ScopeListed`,
`Confirmed`, `ConfirmDone`); the fetcher's log records travel as messages too and are
logged by the run's process, with its handlers. Every message carries the client's
counters so far.

The process is forked, so it inherits the settings, the token and the injected `sleep`
without pickling them. It never touches the parent's database connections, ignores
SIGINT (the run stops it), and exits when the run's process goes away, even by SIGKILL.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from etl import logcontext
from etl.asana.client import AsanaClient, CallStats, Sleep
from etl.asana.pagination import Pagination
from etl.config import AsanaSettings, DateWindow, Scope, Secret
from etl.errors import AsanaError, FetcherDied, OffsetExpiredError
from etl.asana.extract import Preflight, bounds_inclusive, expired, fetch_entry, pagination, preflight
from etl.run import plan
from etl.run.plan import Listing
from etl.transform import (
    RecordRejected,
    Rejection,
    RowValues,
    entry_gid,
    rejected_payload,
    row_values,
    to_row,
)

log = logging.getLogger(__name__)

#: How often one listing may restart after an expired offset before its scope fails.
MAX_LISTING_RESTARTS = 3
#: Messages (pages, mostly) the fetcher may hold for the loader: two batches' worth, so
#: that fetching goes on while the loader writes a batch, and memory stays bounded.
OUTBOX_MESSAGES = 100
#: Bytes of messages the fetcher sends at a time, at most (unless one is larger).
POST_BYTES = 1 << 20
#: Seconds a listing's offset may wait for its turn before it goes first: Asana's offsets
#: expire (after about 15 minutes on other endpoints), and restarting costs every page.
OFFSET_PATIENCE = 300.0
#: Request latencies the feed estimate looks at (the median of the latest).
LATENCY_SAMPLES = 32


# --- messages (fetcher → run) ----------------------------------------------------------

@dataclass
class PageRows:
    """One page of a listing, flattened: the rows the listing owns, the records that
    failed validation, and the gids of those (seen all the same)."""

    scope: Scope
    number: int
    restart: int
    rows: list[RowValues]
    rejections: list[Rejection]
    rejected_gids: list[str]
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class _Done:
    """A task of a scope ended: in full, or with `error`. `scope_stats` are the calls of
    that scope so far."""

    scope: Scope
    error: BaseException | None = None
    scope_stats: CallStats = field(default_factory=CallStats)
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class ScopeListed(_Done):
    """Every listing of a scope ended (or the first to fail stopped them): `listings`
    windows read to the end, `restarts` after expired offsets, over all of them."""

    listings: int = 0
    restarts: int = 0


@dataclass
class Confirmed:
    """What Asana says of one deletion candidate: the entry, or None for a 404."""

    scope: Scope
    gid: str
    entry: dict[str, Any] | None
    stats: CallStats = field(default_factory=CallStats)


class ConfirmDone(_Done):
    """Every candidate of one `confirm` order was answered (or `error` stopped them)."""


@dataclass
class _Preflighted:
    error: BaseException | None = None
    result: Preflight | None = None
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class _Log:
    record: logging.LogRecord


# --- the run's side --------------------------------------------------------------------

class Fetcher:
    """The run's handle on its fetcher process: orders out, messages in.

    Use as a context manager: entering starts the process, leaving stops it (at once:
    it holds nothing that needs saving). `today` is the run's UTC date, for the windows
    of listings split on their first page.
    """

    def __init__(self, settings: AsanaSettings, token: Secret, *, page_size: int | None = None,
                 sleep: Sleep = time.sleep, today: dt.date | None = None) -> None:
        self.settings = settings
        self.token = token
        self.page_size = page_size or settings.page_size
        self.sleep = sleep
        self.today = today or dt.datetime.now(dt.UTC).date()
        #: the client's counters, as of the last message
        self.stats = CallStats()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._orders: Connection | None = None
        self._messages: Connection | None = None
        self._pending: collections.deque[bytes] = collections.deque()

    def __enter__(self) -> Fetcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        orders_in, orders_out = context.Pipe(duplex=False)
        messages_in, messages_out = context.Pipe(duplex=False)
        worker = _Worker(self.settings, self.token, self.page_size, self.sleep, self.today)
        self._process = context.Process(
            target=worker.serve, args=(orders_in, messages_out, orders_out, messages_in,
                                       os.getpid()),
            name="asana-etl fetcher", daemon=True,
        )
        self._process.start()
        orders_in.close()  # the child's ends: only the child may hold them now
        messages_out.close()
        self._orders, self._messages = orders_out, messages_in

    def stop(self) -> None:
        """Stop the process (at once) and release the pipes; safe to call twice."""
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            self._orders.send(None)
        self._process.join(timeout=1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._orders.close()
        self._messages.close()
        self._process = None

    def preflight(self, scope: Scope) -> Preflight:
        """One `limit=1` request, so that a refused token or plan stops the run before it
        writes anything. When requests are slow enough for listings to be split
        (`plan.MIN_SPLIT_LATENCY`), the fetcher then asks, while the run goes on, how
        Asana reads date bounds (`extract.bounds_inclusive`): windows that begin after
        the answer are asked for exactly.

        Raises:
            AuthError: 401 or 402. Any other failure is left for the scope's own listing.
        """
        self._order(("preflight", scope))
        while True:
            message = self.receive(timeout=None)
            if isinstance(message, _Preflighted):
                if message.error is not None:
                    raise message.error
                return message.result

    def list(self, listings: Sequence[Listing]) -> None:
        """Read these listings (the windows of each scope's partition what the run reads
        of it), all in one order so that the largest go first: `PageRows` messages, then
        one `ScopeListed` a scope."""
        self._order(("list", list(listings)))

    def confirm(self, scope: Scope, gids: list[str]) -> None:
        """Ask Asana about each of these deletion candidates: `Confirmed` messages, then
        `ConfirmDone`."""
        self._order(("confirm", scope, gids))

    def receive(self, timeout: float | None) -> Any:
        """The next message, or None if none came within `timeout` seconds.

        Raises:
            FetcherDied: the process is gone.
        """
        while True:
            if not self._pending:
                if not self._messages.poll(timeout):
                    return None
                try:
                    self._pending.extend(self._messages.recv())
                except (EOFError, OSError):
                    self._process.join(timeout=1.0)
                    raise FetcherDied("the fetcher process ended unexpectedly (exit code "
                                      f"{self._process.exitcode})") from None
            message = pickle.loads(self._pending.popleft())
            if isinstance(message, _Log):
                record = message.record
                logging.getLogger(record.name).handle(record)
                continue
            self.stats = message.stats
            return message

    def _order(self, order: tuple[Any, ...]) -> None:
        try:
            self._orders.send(order)
        except OSError:
            raise FetcherDied("the fetcher process ended unexpectedly") from None


# --- the fetcher's side ----------------------------------------------------------------

_sequence = itertools.count()


@dataclass(eq=False)
class _Listing:
    """One listing in the fetcher: its window, what is known of its size, where it is."""

    scope: Scope
    window: DateWindow
    estimate: float | None  # pages, planned or estimated from the first page
    seq: int = field(default_factory=lambda: next(_sequence))
    pages: Pagination | None = None  # None: the next request is its first
    restarts: int = 0
    waiting_since: float = 0.0  # when its offset came (monotonic)
    #: for a listing in the order entries were made: its first and last days, and the
    #: middle day of its latest page (see `plan.pages_left`)
    in_order: bool = False
    days: tuple[dt.date, dt.date, dt.date] | None = None

    def read(self) -> int:
        return 0 if self.pages is None else self.pages.number

    def left(self) -> float:
        """Pages still to read, as far as known (`plan.remaining`); as if very large when
        nothing is, so that listings of unknown size share the budget evenly."""
        days = self.days if self.in_order else None
        left = plan.remaining(self.estimate, self.read(), days)
        return UNKNOWN_PAGES if left is None else left

    def priority(self) -> tuple[int, float, int, int]:
        """Smaller goes first: unknown listings not begun; then the most pages left; then
        the fewest read (even shares between equals), in the order they came."""
        if self.estimate is None and self.pages is None:
            return (0, 0.0, 0, self.seq)
        return (1, -self.left(), self.read(), self.seq)

    def advanced(self, days: list[dt.date], today: dt.date) -> None:
        """Take note of the days of the page just read."""
        if not days or not self.in_order:
            return
        first, at, last = plan.progress(self.window, days, today)
        if self.days is not None:  # its start stays that of its first page
            first, last = self.days[0], max(last, self.days[2])
        self.days = (first, max(first, at), last)


#: The size an unknown listing counts as (pages).
UNKNOWN_PAGES = 1e6


@dataclass(eq=False)
class _ScopeTasks:
    """The listings of one scope: how many are still open, how many ended in full."""

    scope: Scope
    open: int = 0
    listed: int = 0
    restarts: int = 0
    error: BaseException | None = None
    stats: CallStats = field(default_factory=CallStats)


@dataclass(eq=False)
class _Confirms:
    """One `confirm` order: candidates still to answer, and the first error."""

    scope: Scope
    left: int
    error: BaseException | None = None


class _Worker:
    """What runs in the fetcher process."""

    def __init__(self, settings: AsanaSettings, token: Secret, page_size: int, sleep: Sleep,
                 today: dt.date) -> None:
        self.settings = settings
        self.token = token
        self.page_size = page_size
        self.sleep = sleep
        self.today = today
        self.scopes: dict[Scope, _ScopeTasks] = {}
        self.inclusive = False  # proved by the preflight's probe: windows asked exactly
        self.splits = True  # off if the server turns out to ignore the date bounds
        self._send_lock = threading.Lock()
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=OUTBOX_MESSAGES)
        self._cond = threading.Condition()
        self._ready: list[_Listing] = []
        self._confirms: collections.deque[tuple[_Confirms, str]] = collections.deque()
        self._claimed = 0  # workers waiting for a token, each owed a task
        self._open = 0  # listings begun or ready, not ended: what the budget feeds
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_SAMPLES)

    def serve(self, orders: Connection, messages: Connection, parent_orders: Connection,
              parent_messages: Connection, parent_pid: int) -> None:
        parent_orders.close()  # so that the orders pipe ends when the parent does
        parent_messages.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the run decides, and stops us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.messages = messages
        _keep_heap_flat()
        threading.Thread(target=self._post, daemon=True).start()
        _forward_logs(self._send_raw)
        threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()
        self.client = AsanaClient(self.settings, self.token, sleep=self.sleep)
        for n in range(self.settings.concurrency):
            threading.Thread(target=self._work, name=f"asana-{n}", daemon=True).start()
        while True:
            try:
                order = orders.recv()
            except (EOFError, OSError):
                order = None
            if order is None:
                break
            kind, *args = order
            if kind == "preflight":
                threading.Thread(target=self._preflight, args=args, daemon=True).start()
            elif kind == "list":
                self._add_listings(*args)
            else:
                self._add_confirms(*args)
        # asked to stop, or the run is gone: nothing here needs finishing
        os._exit(0)

    # --- the orders ----------------------------------------------------------------

    def _preflight(self, scope: Scope) -> None:
        try:
            result = preflight(self.client, scope)
        except BaseException as exc:
            self._send(_Preflighted(_portable(exc)))
            return
        self._latencies.append(result.latency)
        self._send(_Preflighted(result=result))
        if result.day is not None and result.latency >= plan.MIN_SPLIT_LATENCY:
            with logcontext.scope_context(scope):
                self.inclusive = bounds_inclusive(self.client, scope, result.day)

    def _add_listings(self, listings: list[Listing]) -> None:
        windows = collections.Counter(x.scope for x in listings)
        for scope, count in windows.items():
            self.scopes[scope] = _ScopeTasks(scope, open=count)
            with logcontext.scope_context(scope):
                log.info("scope %s: listing%s", scope, f" in {count} windows" if count > 1 else "")
        with self._cond:
            self._open += len(listings)
            self._ready.extend(_Listing(x.scope, x.window, x.pages) for x in listings)
            self._cond.notify(len(listings))

    def _add_confirms(self, scope: Scope, gids: list[str]) -> None:
        order = _Confirms(scope, len(gids))
        with self._cond:
            self._confirms.extend((order, gid) for gid in gids)
            self._cond.notify(len(gids))

    # --- the workers ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            task = self._take()
            if isinstance(task, _Listing):
                with logcontext.scope_context(task.scope):
                    self._read(task)
            elif task is not None:
                order, gid = task
                with logcontext.scope_context(order.scope):
                    self._confirm(order, gid)

    def _take(self) -> _Listing | tuple[_Confirms, str] | None:
        """The best task once the rate limiter lets this worker send (None if there is
        none left by then: the token then serves this worker's next request)."""
        with self._cond:
            while len(self._ready) + len(self._confirms) <= self._claimed:
                self._cond.wait()
            self._claimed += 1
        self.client.limiter.reserve()
        with self._cond:
            self._claimed -= 1
            if self._ready:
                now = time.monotonic()
                stale = [x for x in self._ready if x.pages is not None
                         and now - x.waiting_since > OFFSET_PATIENCE]
                best = min(stale, key=lambda x: x.waiting_since) if stale else min(
                    self._ready, key=_Listing.priority)
                self._ready.remove(best)
                return best
            if self._confirms:
                return self._confirms.popleft()
            return None

    def _put(self, listing: _Listing) -> None:
        listing.waiting_since = time.monotonic()
        with self._cond:
            self._ready.append(listing)
            self._cond.notify()

    def _read(self, listing: _Listing) -> None:
        tasks = self.scopes[listing.scope]
        if tasks.error is not None:  # another listing of the scope failed
            self._end(listing, tasks, listed=False)
            return
        if listing.pages is None:
            listing.pages = pagination(listing.scope, listing.window, self.page_size,
                                       self.inclusive)
        started = time.monotonic()
        try:
            page = self.client.next_page(listing.pages, tasks.stats)
        except OffsetExpiredError as exc:
            if listing.restarts == MAX_LISTING_RESTARTS:
                self._fail(listing, tasks, expired(exc, MAX_LISTING_RESTARTS))
                return
            log.warning("scope %s: offset expired, restarting the listing of %s: %s",
                        listing.scope, _days(listing.window), exc.message)
            listing.restarts += 1
            tasks.restarts += 1
            listing.pages = None
            self._put(listing)
            return
        except BaseException as exc:  # reported to the run, which decides
            self._fail(listing, tasks, _portable(exc))
            return
        self._latencies.append(time.monotonic() - started)
        days = _entry_days(page.data)
        if page.number == 1:
            listing.in_order = plan.in_order_made(
                [raw["gid"] for raw in page.data if isinstance(raw, dict)
                 and isinstance(raw.get("gid"), str)])
            if not listing.pages.done and self._split(listing, days):
                return
        listing.advanced(days, self.today)
        self._send(self._flatten(listing, page.data, page.number))
        log.debug("scope %s: page %d, %d entries", listing.scope, page.number, len(page.data))
        if listing.pages.done:
            self._end(listing, tasks, listed=True)
        else:
            self._put(listing)

    def _split(self, listing: _Listing, days: list[dt.date]) -> bool:
        """Split a listing whose first page (its entries' `days`) says more follow, while
        fewer listings are open than the budget can feed; True if it was (its page is
        dropped then)."""
        if not self.splits or not days:
            return False
        in_order = listing.in_order
        estimate = plan.estimate_pages(listing.window, days, in_order, self.today)
        if listing.estimate is None:
            listing.estimate = estimate
        feed = plan.feedable(self.settings.requests_per_minute / 60.0,
                             statistics.median(list(self._latencies)), self.settings.concurrency)
        with self._cond:
            idle = feed - self._open
        if idle <= 0:
            return False
        if estimate is None:
            parts = 2  # halves, again and again while the budget is not fed
        else:  # sized: pieces of about the run's share, enough to feed the budget
            parts = min(2 * (idle + 1), int(estimate // plan.MIN_PIECE_PAGES))
        windows = plan.split(listing.window, days, in_order, parts, self.today) if parts >= 2 else []
        if len(windows) < 2:
            return False
        share = None if listing.estimate is None else listing.estimate / len(windows)
        children = [_Listing(listing.scope, w, share, in_order=in_order) for w in windows]
        tasks = self.scopes[listing.scope]
        with self._cond:
            tasks.open += len(children) - 1
            self._open += len(children) - 1
            self._ready.extend(children)
            self._cond.notify(len(children))
        log.info("scope %s: %s split into %d windows (%s)", listing.scope, _days(listing.window),
                 len(children), "about %.0f pages" % estimate if estimate else "size unknown",
                 extra={"event": "listing_split",
                        "fields": {"windows": [_days(w) for w in windows],
                                   "estimated_pages": estimate}})
        return True

    def _end(self, listing: _Listing, tasks: _ScopeTasks, *, listed: bool) -> None:
        with self._cond:
            self._open -= 1
            tasks.open -= 1
            tasks.listed += listed
            last = tasks.open == 0
        if last:
            self._scope_listed(tasks)

    def _fail(self, listing: _Listing, tasks: _ScopeTasks, error: BaseException) -> None:
        """A listing failed: so does its scope; its other listings end unread."""
        with self._cond:
            first = tasks.error is None
            tasks.error = tasks.error or error
            cancelled = [x for x in self._ready if x.scope == listing.scope]
            for x in cancelled:
                self._ready.remove(x)
        for x in cancelled:
            self._end(x, tasks, listed=False)
        self._end(listing, tasks, listed=False)
        if first:
            log.debug("scope %s: the listing of %s failed", listing.scope, _days(listing.window))

    def _scope_listed(self, tasks: _ScopeTasks) -> None:
        self._send(ScopeListed(tasks.scope, tasks.error, dataclasses.replace(tasks.stats),
                               listings=tasks.listed, restarts=tasks.restarts))

    def _confirm(self, order: _Confirms, gid: str) -> None:
        tasks = self.scopes[order.scope]  # listed before its candidates come
        if order.error is None:
            try:
                self._send(Confirmed(order.scope, gid, fetch_entry(self.client, gid, tasks.stats)))
            except BaseException as exc:
                order.error = order.error or _portable(exc)
        with self._cond:
            order.left -= 1
            last = order.left == 0
        if last:
            self._send(ConfirmDone(order.scope, order.error, dataclasses.replace(tasks.stats)))

    # --- messages ------------------------------------------------------------------

    def _send(self, message: Any) -> None:
        with self._send_lock:  # the counters of successive messages never go back
            message.stats = dataclasses.replace(self.client.stats)
            self._outbox.put(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _send_raw(self, message: Any) -> None:
        with self._send_lock:
            self._outbox.put(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _post(self) -> None:
        """Move messages from the outbox to the pipe, in order, as many at a time as are
        waiting: this thread gets the GIL only now and then from the busy workers, so a
        message a turn made the pipe the bottleneck."""
        while True:
            batch = [self._outbox.get()]
            size = len(batch[0])
            while size < POST_BYTES:
                try:
                    batch.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1])
            try:
                self.messages.send(batch)
            except (OSError, EOFError):
                os._exit(0)  # the run is gone

    def _flatten(self, listing: _Listing, data: list[Any], number: int) -> PageRows:
        rows: list[RowValues] = []
        rejections: list[Rejection] = []
        rejected: list[str] = []
        scope, window = listing.scope, listing.window
        for raw in data:
            try:
                row = to_row(raw)
            except RecordRejected as exc:
                gid = entry_gid(raw)
                rejections.append(Rejection(gid, str(exc), rejected_payload(raw)))
                log.warning("scope %s: rejected entry %s: %s", scope, gid or "(no gid)", exc)
                if gid:  # seen all the same: it must not look deleted
                    rejected.append(gid)
                continue
            day = row["entered_on"]
            if day in window:  # else another listing's, or outside the run's window
                rows.append(row_values(row))
            elif self.splits and day not in plan.widened(window):
                self._bounds_ignored(listing, day)
        return PageRows(scope, number, listing.restarts, rows, rejections, rejected)

    def _bounds_ignored(self, listing: _Listing, day: dt.date) -> None:
        """An entry outside the dates asked for: this server ignores them, so split
        listings would each read everything; split no more."""
        self.splits = False
        log.warning("scope %s: Asana returned an entry of %s to a listing of %s: it seems to "
                    "ignore the date bounds, so no listing is split any further", listing.scope,
                    day, _days(listing.window))


def _entry_days(data: list[Any]) -> list[dt.date]:
    """The `entered_on` days of a page's entries, in page order (invalid ones left out)."""
    days = []
    for raw in data:
        value = raw.get("entered_on") if isinstance(raw, dict) else None
        if isinstance(value, str) and len(value) == 10:
            with contextlib.suppress(ValueError):
                days.append(dt.date.fromisoformat(value))
    return days


def _days(window: DateWindow) -> str:
    """'2026-01-01..2026-03-31', '..2026-03-31', '2026-01-01..' or 'all days'."""
    if window.since is None and window.until is None:
        return "all days"
    return f"{window.since or ''}..{window.until or ''}"


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives the pipe, else a RuntimeError that says what it was."""
    if isinstance(exc, AsanaError):
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(exc))
            return exc
    log.error("fetcher: %s", exc, exc_info=exc)
    return RuntimeError(f"{exc.__class__.__name__}: {exc}")


#: glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def _keep_heap_flat() -> None:
    """Keep the fetcher's memory flat however long it runs (glibc only; elsewhere a
    no-op). Its worker threads each allocate and free page-sized buffers, and glibc gives
    each thread an arena of its own whose free space fragments and stays resident: the
    fetcher grew from 76 to 95 MB over a 1,000,000-entry sync. One arena, trimmed once a
    second, held it at 70-72 MB, at no measurable cost (the GIL serialises the threads'
    allocations anyway)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)

    def trim() -> None:
        while True:
            time.sleep(1.0)
            malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()


def _exit_with(parent_pid: int) -> None:
    """Exit when the run's process is gone (even SIGKILLed, it cannot tell us)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


class _ForwardLogs(logging.Handler):
    """Sends each record to the run's process, which logs it with its own handlers."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record = copy.copy(record)
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            if not hasattr(record, "scope"):
                record.scope = logcontext.current_scope()  # the run's process adds run_id
            self.send(_Log(record))
        except Exception:
            self.handleError(record)


def _forward_logs(send: Callable[[Any], None]) -> None:
    """Every record that passes its logger's level goes to the run's process, once: no
    handler is left in this process but one on the root, which every logger reaches. The
    run's process then logs it through the same loggers, so it is handled as if logged
    there."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        logger.handlers = []
        logger.propagate = True
    logging.getLogger().addHandler(_ForwardLogs(send))
