"""Scopes and what the database knows → listings: date windows of a scope, largest first.

Asana lets a token send 1,500 requests a minute, but one listing sends one request at a
time: at 200 ms a request it uses a fifth of that. A run keeps the budget busy by
reading several listings at once, and a scope too large to finish in time alone is cut
into date windows that are listed side by side (`entered_on_start_date` and
`entered_on_end_date` work with every filter).

A listing owns a window of `entered_on` days; the windows of one scope partition its
days with no gap (the outer ones open-ended where the scope's window is), so that each
entry belongs to exactly one of them, and a listing keeps only the entries it owns.
Asana does not document whether its date bounds are inclusive: unless the run has
proved that they are, a listing asks for one day more at each bounded end
(`query_dates`), so that either reading loses nothing.

Where the sizes come from:
- for the days a complete listing of the scope has read before (a full read, or the
  window of a backfill or of a recent run: `covered`), the entries per `entered_on` day
  that the database holds (`plan`), and for the few days since, the same density;
- for every other day, as on a first run, the first page of a listing: `split` cuts a
  listing that says more pages follow, and `estimate_pages` reads its size off the page
  where it lists entries in the order they were made (as a listing in gid order does).
  The database may hold entries of such days (another scope's or a failed run's), but
  not all of them: sizing by them would plan one listing for months of entries.

Everything here is pure: no I/O and no clock (`today` is an argument).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from etl.asana.extract import query_dates
from etl.config import DateWindow, Scope
from etl.run import coverage

DAY = dt.timedelta(days=1)

#: A request faster than this means the fetcher's CPU, not the network, sets the pace
#: (it flattens about 300 pages a second): more listings at once would gain nothing, so
#: nothing is split.
MIN_SPLIT_LATENCY = 0.05
#: Listings in flight beyond the bare number the budget can feed, for latency that varies.
FEED_MARGIN = 1.25
#: No piece of a split scope is planned smaller than this many pages: each piece costs
#: about half a page of rounding, which a smaller piece would not repay.
MIN_PIECE_PAGES = 5
#: How far beyond its share of the run a listing may go before it is cut (in shares).
SHARE_SLACK = 0.25
#: A page lists entries in the order they were made when this share of its neighbours'
#: gids rise (a page in no particular order gives about half).
IN_ORDER = 0.9


@dataclass(frozen=True)
class Listing:
    """One listing to read: a scope, the days it owns, and its size as far as known."""

    scope: Scope
    window: DateWindow = DateWindow()
    #: estimated pages; None when nothing is known (a scope never read before)
    pages: float | None = None
    #: for a listing of unknown size: the pages a day of its scope's covered days held
    #: (None: no complete read has covered any), what its size is taken from once its
    #: first page tells where its days begin (`estimate_pages`)
    per_day: float | None = None


def scope_windows(
    scopes: Sequence[Scope],
    *,
    recent_days: int,
    full_every_days: int,
    last_full: Mapping[Scope, dt.datetime],
    today: dt.date,
) -> dict[Scope, DateWindow]:
    """What a `sync` reads of each scope. With `recent_days` 0, every day. With N, the
    entries entered in the last N days (today included) and any later (future-dated
    entries count); but a scope whose last complete full read (`last_full`) was
    `full_every_days` or more calendar days ago, or never, is read in full: so that one
    nightly line stays exact within that many days, and the other nights read the
    window alone."""
    if recent_days <= 0:
        return {scope: DateWindow() for scope in scopes}
    recent = DateWindow(today - DAY * (recent_days - 1), None)
    windows = {}
    for scope in scopes:
        last = last_full.get(scope)
        due = last is None or (today - last.date()).days >= full_every_days
        windows[scope] = DateWindow() if due else recent
    return windows


def widened(window: DateWindow) -> DateWindow:
    """The days a listing of `window` can return whichever way the server reads its
    bounds (see `query_dates`)."""
    return DateWindow(*query_dates(window, inclusive=False))


def feedable(requests_per_second: float, latency: float, concurrency: int) -> int:
    """How many listings at once keep the request budget busy: each sends one request
    at a time, so it uses at most `1 / latency` requests a second."""
    if latency < MIN_SPLIT_LATENCY:
        return 1
    return max(1, min(concurrency, math.ceil(requests_per_second * latency * FEED_MARGIN)))


def plan(
    scopes: Sequence[tuple[Scope, DateWindow]],
    history: Mapping[Scope, Sequence[tuple[dt.date, int]]],
    *,
    feed: int,
    page_size: int,
    covered: Mapping[Scope, Sequence[DateWindow]] | None = None,
    today: dt.date | None = None,
) -> list[Listing]:
    """The listings that read `scopes` (each in its window), largest first.

    `covered` holds, for each scope, the windows its complete listings have read (see
    `etl.store.runs.covered_days`), and `history`, the number of its entries per
    `entered_on` day that the database holds. Only days a complete read covered (or
    the few days next to them, up to `today`: `coverage.segments`) are sized by
    `history`. Sized days whose pages exceed their share of the run (all sized pages
    over `feed`, the listings the budget can feed at once) are cut into pieces of about
    equal entries, so that even the largest piece, read at full sequential speed from
    the start, ends before the run would; at least `MIN_PIECE_PAGES` each. Every stretch of days no complete read
    covered is one listing of unknown size, listed first: its first page is the cheapest
    way to learn about it. Without `covered`, a scope `history` names counts as covered
    over all of its window.
    """
    today = today or dt.date.max
    parts: list[tuple[Scope, DateWindow, list[tuple[dt.date, float]]]] = []
    unknown: list[Listing] = []
    for scope, window in scopes:
        if covered is None:
            read = [DateWindow()] if scope in history else []
        else:
            read = coverage.merged(covered.get(scope, ()))
        counts = {day: n for day, n in history.get(scope, ()) if n > 0}
        per_day = coverage.per_day(read, counts, today, page_size)
        for stretch in coverage.segments(window, read, today):
            if not stretch.sized:
                unknown.append(Listing(scope, stretch.window, None, per_day))
                continue
            inside = [(day, float(n)) for day, n in counts.items()
                      if day in stretch.window and day not in stretch.near]
            parts.append((scope, stretch.window, inside + coverage.near(stretch, read, counts)))
    total = sum(_pages(sum(n for _, n in days), page_size) for *_, days in parts)
    largest = max(MIN_PIECE_PAGES, total / max(1, feed))
    listings: list[Listing] = []
    for scope, stretch, days in parts:
        cut_in = max(1, min(len(days), math.ceil(_pages(sum(n for _, n in days), page_size)
                                                 / largest)))
        cuts, counts = _pieces(sorted(days), cut_in)
        for piece, entries in zip(partition(stretch, cuts), counts):
            listings.append(Listing(scope, piece, _pages(entries, page_size)))
    # unknown first, then largest first; ties in the order given
    return unknown + sorted(listings, key=lambda x: -(x.pages or 0))


def pieces(pages: float, others: float, feed: int) -> int:
    """Into how many pieces to cut a listing of `pages` when the other listings of the
    run have `others` pages left and `feed` listings at once keep the budget busy: each
    piece about the run's share (all pages over `feed`), so that none runs on alone at
    the end; at least `MIN_PIECE_PAGES` each."""
    share = max(MIN_PIECE_PAGES, (pages + others) / max(1, feed))
    wanted = math.ceil(pages / share - SHARE_SLACK)
    return max(1, min(wanted, int(pages // MIN_PIECE_PAGES)))


def _pages(entries: float, page_size: int) -> int:
    """Requests a listing of `entries` takes: an empty one still costs one."""
    return max(1, math.ceil(entries / page_size))


def _pieces(days: list[tuple[dt.date, float]],
            pieces: int) -> tuple[list[dt.date], list[float]]:
    """Where to cut `days` (the first day of every piece but the first) so that `pieces`
    pieces hold about equal entries, and the entries of each. Days are never divided:
    a day is the finest a window can be."""
    total = sum(n for _, n in days)
    cuts: list[dt.date] = []
    counts = [0.0]
    running = 0.0
    for day, n in days:
        if running and running >= total * len(counts) / pieces and len(counts) < pieces:
            cuts.append(day)
            counts.append(0.0)
        running += n
        counts[-1] += n
    return cuts, counts


def partition(window: DateWindow, cuts: Sequence[dt.date]) -> list[DateWindow]:
    """`window` cut before each day of `cuts`: windows with no gap and no overlap whose
    union is `window` (its open ends stay open). Cuts outside the window, or repeated,
    are ignored."""
    inside = sorted({c for c in cuts if c in window and c != window.since})
    bounds = [window.since, *inside]
    ends = [c - DAY for c in inside] + [window.until]
    return [DateWindow(lo, hi) for lo, hi in zip(bounds, ends)]


def in_order_made(gids: Sequence[str]) -> bool:
    """Whether a page lists entries in the order they were made: gids grow over time, so
    a listing in gid order is one. People log time on or near its day, so such a listing
    also runs from its earliest days to its latest (give or take a few days)."""
    numbers = [int(g) for g in gids if g.isdigit()]
    rising = sum(a < b for a, b in zip(numbers, numbers[1:]))
    return len(numbers) > 1 and rising >= IN_ORDER * (len(numbers) - 1)


def _span(window: DateWindow, days: Sequence[dt.date], today: dt.date) -> tuple[dt.date, dt.date]:
    """The days a listing's entries can be on, as far as its window and its first page
    tell: from its lower bound (else its earliest entry) to its upper bound (else today,
    or the latest entry if that is later)."""
    lo = window.since if window.since is not None else min(days)
    hi = window.until if window.until is not None else max(today, max(days))
    return lo, max(lo, hi)


def covered(first: dt.date, at: dt.date, last: dt.date) -> float:
    """The share of a listing's days, from `first` to `last`, that lie behind `at`."""
    return min(1.0, max(1e-6, ((at - first).days + 1) / ((last - first).days + 1)))


def pages_left(first: dt.date, at: dt.date, last: dt.date, read: int) -> float:
    """What is left of a listing in the order entries were made, from how far through
    its days it has come: `read` pages so far, the latest of them about `at` (its
    middle day), out of days from `first` to `last`. Such a listing's pages run from
    its earliest days to its latest, so the share of days behind it is about the share
    of its pages behind it: an estimate that corrects itself page by page (coarse at
    first: a dense listing's first page covers a day or two)."""
    done = read - 0.5  # `at` is the middle of the latest page
    return max(0.0, done / covered(first, at, last) - read)


def remaining(estimate: float | None, read: int,
              days: tuple[dt.date, dt.date, dt.date] | None) -> float | None:
    """Pages still to read of a listing: its estimate (planned, or from a first page)
    less what it has read, and, for a listing in the order made (`days`: see
    `progress`), how far through its days it has come (`pages_left`), trusted the more
    the more of them lie behind it. None when nothing is known."""
    prior = None if estimate is None else max(0.0, estimate - read)
    if days is None or not read:
        return prior
    measured = pages_left(*days, read=read)
    if prior is None:
        return measured
    trust = covered(*days)
    return trust * measured + (1 - trust) * prior


def progress(window: DateWindow, days: Sequence[dt.date],
             today: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """`first`, `at` and `last` for `pages_left`, from a page of a listing (its first,
    for `first`): its window's bounds where it has them, else the page's earliest days
    (leaving out the earliest twentieth, entries made long after their day) and today
    (or the latest day seen, if later); `at` is the page's middle day."""
    ranked = sorted(days)
    first = window.since if window.since is not None else ranked[len(ranked) // 20]
    at = max(first, ranked[len(ranked) // 2])
    last = window.until if window.until is not None else max(today, ranked[-1])
    return first, at, max(at, last)


def estimate_pages(window: DateWindow, days: Sequence[dt.date], in_order: bool,
                   today: dt.date, per_day: float | None = None) -> float | None:
    """The size of a listing, in pages, from its first page (the `entered_on` days of its
    entries): with `per_day`, the pages a day of its scope held where a complete read
    covered it, that many for every day from its first (the page's earliest, or its
    window's) to its last (its window's, or today); else when that page lists entries in
    the order they were made (`in_order_made`), from how far through its days the page
    came (see `pages_left`: coarse where a page holds less than a day); else None (a page
    in no particular order says nothing of the size)."""
    if per_day is not None and days:
        first, _, last = progress(window, days, today) if in_order else (
            _span(window, days, today)[0], None, _span(window, days, today)[1])
        return max(1.0, per_day * ((last - first).days + 1))
    if not in_order or not days:
        return None
    return 1 + pages_left(*progress(window, days, today), read=1)


def split(window: DateWindow, days: Sequence[dt.date], in_order: bool, parts: int,
          today: dt.date) -> list[DateWindow]:
    """Cut a listing whose first page says more follow into up to `parts` windows that
    partition `window`, using that page: the `entered_on` days of its entries, and
    whether it lists them in the order they were made (`in_order_made`).

    Such a page holds the earliest entries, so the span from there to the upper bound
    is cut into equal lengths; a page in no particular order is a sample of the
    listing, so it is cut at the page's quantiles. A window of one day cannot be cut
    (the list is then `[window]`).
    """
    if not days or parts < 2:
        return [window]
    lo, hi = _span(window, days, today)
    if in_order:
        length = (hi - lo).days + 1
        cuts = [lo + DAY * round(length * i / parts) for i in range(1, parts)]
    else:
        ranked = sorted(d for d in days if d in window)
        cuts = [ranked[len(ranked) * i // parts] for i in range(1, parts)] if ranked else []
    return partition(window, [c for c in cuts if lo < c <= hi])
