"""Which days of a scope the database can size a listing by: those a complete listing of
the scope has read (`etl.store.runs.covered_days`), and the few days next to them.

The database may hold entries of other days too (linked by another run that failed, or
read for another window), but not all of them: a plan that sized such days by it would
take months of entries for a few pages, and read them as one listing. Those days are
unknown, and a listing's first page sizes them (`etl.run.plan`).

Pure: no I/O and no clock (`today` is an argument).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from etl.config import DateWindow

DAY = dt.timedelta(days=1)

#: Days next to the ones a complete read covered that are sized as if covered, at the
#: density of the covered days nearest them: the nights since the last run. A longer
#: stretch is unknown, probed as on a first run.
NEAR_DAYS = 7
#: How many of the nearest covered days that density is taken over.
DENSITY_DAYS = 28


@dataclass(frozen=True)
class Stretch:
    """Consecutive days of a scope's window: sized from the database (`sized`), with the
    days of it no complete read covered (`near`, up to today), or of unknown size."""

    window: DateWindow
    sized: bool
    near: tuple[dt.date, ...] = ()


def merged(covered: Sequence[DateWindow]) -> list[DateWindow]:
    """`covered` as the fewest windows, in order: those that overlap or touch are one."""
    spans: list[list[dt.date]] = []
    for c in sorted(covered, key=lambda c: c.since or dt.date.min):
        a, b = c.since or dt.date.min, c.until or dt.date.max
        if spans and (spans[-1][1] == dt.date.max or spans[-1][1] + DAY >= a):
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [DateWindow(None if a == dt.date.min else a, None if b == dt.date.max else b)
            for a, b in spans]


def segments(window: DateWindow, covered: Sequence[DateWindow], today: dt.date) -> list[Stretch]:
    """`window` as consecutive stretches with no gap: the days of `covered` windows can be
    sized from the database, and so can stretches of at most `NEAR_DAYS` days
    (counted up to `today`) between or next to them; the others cannot."""
    lo, hi = window.since or dt.date.min, window.until or dt.date.max
    spans = []
    for c in merged(covered):
        a, b = max(lo, c.since or dt.date.min), min(hi, c.until or dt.date.max)
        if a <= b:
            spans.append((a, b))
    stretches: list[tuple[dt.date, dt.date, bool]] = []
    at: dt.date | None = lo
    for a, b in spans:
        if at is not None and a > at:
            stretches.append((at, a - DAY, False))
        stretches.append((a, b, True))
        at = None if b == dt.date.max else b + DAY
    if at is not None and at <= hi:
        stretches.append((at, hi, False))
    result: list[Stretch] = []
    for a, b, sized in stretches:
        days = _days(a, b, today)
        short = not sized and bool(spans) and days is not None and len(days) <= NEAR_DAYS
        window = DateWindow(None if a == dt.date.min else a, None if b == dt.date.max else b)
        if sized or short:
            extra = tuple(days or ()) if short else ()
            if result and result[-1].sized:
                last = result.pop()
                window = DateWindow(last.window.since, window.until)
                extra = last.near + extra
            result.append(Stretch(window, True, extra))
        else:
            result.append(Stretch(window, False))
    return result


def _days(a: dt.date, b: dt.date, today: dt.date) -> list[dt.date] | None:
    """The days from `a` to `b`, or to `today` if that is earlier (none if `a` is later);
    None when `a` is unbounded."""
    if a == dt.date.min:
        return None
    end = min(b, today)
    return [a + DAY * i for i in range((end - a).days + 1)] if end >= a else []


def near(stretch: Stretch, covered: Sequence[DateWindow],
          counts: Mapping[dt.date, int]) -> list[tuple[dt.date, float]]:
    """The `near` days of a sized stretch, each at the density of the `DENSITY_DAYS`
    covered days nearest it."""
    near: list[tuple[dt.date, float]] = []
    for day in stretch.near:
        sample: list[int] = []
        for step in range(1, 4 * DENSITY_DAYS):
            for other in (day - DAY * step, day + DAY * step):
                if (len(sample) < DENSITY_DAYS and other in stretch.window
                        and any(other in c for c in covered)):
                    sample.append(counts.get(other, 0))
        if sample:
            near.append((day, sum(sample) / len(sample)))
    return near


def per_day(covered: Sequence[DateWindow], counts: Mapping[dt.date, int], today: dt.date,
             page_size: int) -> float | None:
    """Pages a day over the days `covered` (from the scope's first entry to `today`)."""
    if not counts or not covered:
        return None
    start = min(counts)
    days = 0
    for c in covered:
        lo, hi = max(c.since or start, start), min(c.until or today, today)
        days += max(0, (hi - lo).days + 1)
    if not days:
        return None
    entries = sum(n for day, n in counts.items() if any(day in c for c in covered))
    return entries / days / page_size
