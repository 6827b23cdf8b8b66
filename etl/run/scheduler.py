"""Which request the fetcher sends next: requests, not listings, are what its workers
take in turn.

Each worker, once the rate limiter lets it send, takes the best task at that moment:
- a listing whose offset has waited `OFFSET_PATIENCE` seconds, before all (Asana's
  offsets expire, and restarting a listing costs every page it had read);
- else the listing that looks largest (its planned or estimated pages still to read),
  so that the longest listings run at full sequential speed and none ends alone at the
  end of the run; listings not yet begun and of unknown size go first, as their first
  page is how their size is learnt;
- else a single request, from the first of its queues that has one: deletion
  confirmations, then whatever a later queue holds. Single requests are the best filler
  there is, and never hold up a listing.

A listing is "open" from the moment it is ready until it ends: how many are open is
what the budget must feed (`plan.feedable`), so the listing reader asks before it
splits one.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from etl.asana.pagination import Pagination
from etl.asana.ratelimit import RateLimiter
from etl.config import DateWindow, Scope
from etl.run import plan

#: Seconds a listing's offset may wait for its turn before it goes first: Asana's offsets
#: expire (after about 15 minutes on other endpoints), and restarting costs every page.
OFFSET_PATIENCE = 300.0
#: The size an unknown listing counts as (pages).
UNKNOWN_PAGES = 1e6

_sequence = itertools.count()


@dataclass(eq=False)
class ScopeProgress:
    """The pages the listings of one scope have read so far."""

    pages: int = 0


@dataclass(eq=False)
class ListingTask:
    """One listing in the fetcher: its window, what is known of its size, where it is."""

    scope: Scope
    window: DateWindow
    estimate: float | None  # pages, planned or estimated from the first page
    #: whether `estimate` came from the database (else from a page, which is coarser)
    planned: bool = False
    seq: int = field(default_factory=lambda: next(_sequence))
    pages: Pagination | None = None  # None: the next request is its first
    restarts: int = 0
    waiting_since: float = 0.0  # when its offset came (monotonic)
    #: for a listing in the order entries were made: its first and last days, and the
    #: middle day of its latest page (see `plan.pages_left`)
    in_order: bool = False
    days: tuple[dt.date, dt.date, dt.date] | None = None
    per_day: float | None = None  # see `plan.Listing`
    #: the pages read by all the listings of its scope, shared among them
    progress: ScopeProgress = field(default_factory=lambda: ScopeProgress())

    @classmethod
    def of(cls, listing: plan.Listing, progress: ScopeProgress) -> ListingTask:
        """The task of a listing of the plan; `progress`, its scope's."""
        return cls(listing.scope, listing.window, listing.pages, planned=listing.pages is not None,
                   per_day=listing.per_day, progress=progress)

    def read(self) -> int:
        return 0 if self.pages is None else self.pages.number

    def left(self) -> float:
        """Pages still to read, as far as known (`plan.remaining`); as if very large when
        nothing is, so that listings of unknown size share the budget evenly."""
        days = self.days if self.in_order else None
        left = plan.remaining(self.estimate, self.read(), days)
        return UNKNOWN_PAGES if left is None else left

    def priority(self) -> tuple[int, float, int, int, int]:
        """Smaller goes first: unknown listings not begun; then the most pages left; then
        the fewest read (even shares between equals), in the order they came.

        Among listings whose size stays unknown (a page in no particular order tells
        none), those of the scope that has read the most pages go first: where a few
        people log most of the hours, a scope that has gone far is likely to go farther,
        and it must not be left to end the run alone; a scope's own listings (the
        pieces of a split, of about equal size) share evenly."""
        if self.estimate is None and self.pages is None:
            return (0, 0.0, 0, 0, self.seq)
        left = self.left()
        if left >= UNKNOWN_PAGES:
            return (1, -left, -self.progress.pages, self.read(), self.seq)
        return (1, -left, 0, self.read(), self.seq)

    def pieces(self, windows: list[DateWindow]) -> list[ListingTask]:
        """The listings this one is split into, one a window of `windows`, each with an
        even share of its estimate."""
        share = None if self.estimate is None else self.estimate / len(windows)
        return [ListingTask(self.scope, w, share, in_order=self.in_order, per_day=self.per_day,
                            progress=self.progress) for w in windows]

    def advanced(self, days: list[dt.date], today: dt.date) -> None:
        """Take note of the page just read, and of its entries' days."""
        self.progress.pages += 1
        if not days or not self.in_order:
            return
        first, at, last = plan.progress(self.window, days, today)
        if self.days is not None:  # its start stays that of its first page
            first, last = self.days[0], max(last, self.days[2])
        self.days = (first, max(first, at), last)


@dataclass(eq=False)
class SingleRequest:
    """One request that is not a listing's page (a deletion confirmation, an entry's
    details): `send` sends it and deals with its answer; `scope`, the scope it is for,
    if any."""

    scope: Scope | None
    send: Callable[[], None]


class RequestScheduler:
    """The fetcher's ready work, and the choice of what goes next (see the module).

    `queues` is how many queues of single requests there are, in order of priority.
    Thread-safe: every worker takes from it, and the listing reader puts back.
    """

    def __init__(self, limiter: RateLimiter, queues: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = limiter
        self.clock = clock
        self._cond = threading.Condition()
        self._ready: list[ListingTask] = []
        self._singles: list[collections.deque[SingleRequest]] = [
            collections.deque() for _ in range(queues)]
        self._claimed = 0  # workers waiting for a token, each owed a task
        self._open: set[ListingTask] = set()  # listings ready or being read, not ended

    @property
    def open(self) -> int:
        """Listings ready or being read, not ended."""
        with self._cond:
            return len(self._open)

    def work_left(self, besides: ListingTask) -> tuple[float, bool]:
        """Pages the open listings other than `besides` have left, as far as known (one
        whose size is unknown counts as `plan.MIN_PIECE_PAGES`), and whether one of
        them has not been asked for its first page yet (its size is still to learn)."""
        with self._cond:
            others = [x for x in self._open if x is not besides]
        sizes = [x.left() for x in others]
        left = sum(plan.MIN_PIECE_PAGES if size >= UNKNOWN_PAGES else size for size in sizes)
        return left, any(x.pages is None and x.estimate is None for x in others)

    def add(self, listings: Iterable[ListingTask], *,
            replacing: ListingTask | None = None) -> None:
        """New listings, ready; `replacing`: the open one they take the place of (a
        listing split into windows is replaced by them)."""
        listings = list(listings)
        with self._cond:
            self._open.update(listings)
            self._open.discard(replacing)
            self._ready.extend(listings)
            self._cond.notify(len(listings))

    def put_back(self, listing: ListingTask) -> None:
        """A listing read a page and has more: ready again (its offset waits from now)."""
        listing.waiting_since = self.clock()
        with self._cond:
            self._ready.append(listing)
            self._cond.notify()

    def ended(self, listing: ListingTask) -> None:
        """An open listing ended (in full, failed or cancelled)."""
        with self._cond:
            self._open.discard(listing)

    def cancel(self, scope: Scope) -> list[ListingTask]:
        """Take the ready listings of `scope` out (its scope failed); returns them, still
        open: end each."""
        with self._cond:
            cancelled = [x for x in self._ready if x.scope == scope]
            self._ready = [x for x in self._ready if x.scope != scope]
        return cancelled

    def add_single(self, queue: int, requests: Iterable[SingleRequest]) -> None:
        """Single requests, at the back of queue `queue` (0 goes first)."""
        requests = list(requests)
        with self._cond:
            self._singles[queue].extend(requests)
            self._cond.notify(len(requests))

    def take(self) -> ListingTask | SingleRequest | None:
        """The best task once the rate limiter lets this worker send (None if there is
        none left by then: the token then serves this worker's next request). Waits
        while there is nothing to do."""
        with self._cond:
            while self._waiting() <= self._claimed:
                self._cond.wait()
            self._claimed += 1
        self.limiter.reserve()
        with self._cond:
            self._claimed -= 1
            return self._best()

    def _waiting(self) -> int:
        return len(self._ready) + sum(map(len, self._singles))

    def _best(self) -> ListingTask | SingleRequest | None:
        if self._ready:
            now = self.clock()
            stale = [x for x in self._ready if x.pages is not None
                     and now - x.waiting_since > OFFSET_PATIENCE]
            best = min(stale, key=lambda x: x.waiting_since) if stale else min(
                self._ready, key=ListingTask.priority)
            self._ready.remove(best)
            return best
        for queue in self._singles:
            if queue:
                return queue.popleft()
        return None
