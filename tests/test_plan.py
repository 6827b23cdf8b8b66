"""The plan alone: scopes and what the database knows → listings (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl.run import coverage, plan
from etl.config import DateWindow, Scope
from etl.run.plan import Listing

DAY = dt.timedelta(days=1)
TODAY = dt.date(2026, 12, 1)
START = TODAY - 729 * DAY  # two years of history
USER = Scope("user", "1")
WORKSPACE = Scope("workspace", "9")


def days_of(window: DateWindow, lo: dt.date, hi: dt.date) -> set[dt.date]:
    """The days of [lo, hi] that `window` holds."""
    return {lo + i * DAY for i in range((hi - lo).days + 1) if lo + i * DAY in window}


def assert_partition(windows: list[DateWindow], whole: DateWindow, lo: dt.date, hi: dt.date) -> None:
    """Every day of `whole` (between lo and hi) in exactly one window, none outside, and
    the outer ends as open as `whole`'s."""
    seen: list[dt.date] = []
    for w in windows:
        seen.extend(days_of(w, lo, hi))
    assert sorted(seen) == sorted(days_of(whole, lo, hi))  # no gap, no overlap
    assert windows[0].since == whole.since and windows[-1].until == whole.until
    for a, b in zip(windows, windows[1:]):
        assert a.until is not None and b.since == a.until + DAY  # in order, adjacent


def history(per_day: dict[dt.date, int]) -> list[tuple[dt.date, int]]:
    return sorted(per_day.items())


# --- windows -----------------------------------------------------------------------------

@pytest.mark.parametrize("whole", [
    DateWindow(), DateWindow(START, None), DateWindow(None, TODAY), DateWindow(START, TODAY),
])
def test_a_partition_has_no_gap_and_keeps_its_open_ends(whole):
    cuts = [START + 100 * DAY, START + 400 * DAY, START + 401 * DAY, START + 700 * DAY]
    windows = plan.partition(whole, cuts)
    assert len(windows) == 5
    assert_partition(windows, whole, START - 30 * DAY, TODAY + 30 * DAY)


def test_cuts_outside_the_window_or_repeated_are_ignored():
    whole = DateWindow(START, START + 10 * DAY)
    windows = plan.partition(whole, [START, START - DAY, START + 5 * DAY, START + 5 * DAY,
                                     START + 11 * DAY])
    assert windows == [DateWindow(START, START + 4 * DAY), DateWindow(START + 5 * DAY,
                                                                     START + 10 * DAY)]


@given(st.lists(st.integers(-50, 800), max_size=12),
       st.one_of(st.none(), st.integers(0, 300)), st.one_of(st.none(), st.integers(300, 730)))
def test_any_cuts_partition_any_window(cuts, since, until):
    whole = DateWindow(None if since is None else START + since * DAY,
                       None if until is None else START + until * DAY)
    windows = plan.partition(whole, [START + c * DAY for c in cuts])
    assert_partition(windows, whole, START - 60 * DAY, START + 800 * DAY)


def test_bounds_are_widened_a_day_unless_known_inclusive():
    window = DateWindow(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert plan.query_dates(window, inclusive=False) == (dt.date(2026, 2, 28), dt.date(2026, 4, 1))
    assert plan.query_dates(window, inclusive=True) == (dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert plan.query_dates(DateWindow(), inclusive=False) == (None, None)
    assert plan.query_dates(DateWindow(None, TODAY), inclusive=False) == (None, TODAY + DAY)
    assert plan.widened(window) == DateWindow(dt.date(2026, 2, 28), dt.date(2026, 4, 1))


def test_neighbours_asked_with_widened_bounds_overlap_by_a_day_each_way():
    """Whichever way the server reads bounds, a day on either side of a cut is asked of
    both neighbours (inclusive) or of exactly one (exclusive): never of neither."""
    left, right = plan.partition(DateWindow(), [dt.date(2026, 6, 1)])
    (_, left_end), (right_start, _) = plan.query_dates(left, False), plan.query_dates(right, False)
    for day in (dt.date(2026, 5, 31), dt.date(2026, 6, 1)):
        inclusive = [day <= left_end, day >= right_start]
        exclusive = [day < left_end, day > right_start]
        assert any(inclusive) and any(exclusive)


# --- recent windows ------------------------------------------------------------------------

def test_recent_days_zero_reads_every_scope_in_full():
    windows = plan.scope_windows([USER, WORKSPACE], recent_days=0, full_every_days=7,
                                 last_full={}, today=TODAY)
    assert windows == {USER: DateWindow(), WORKSPACE: DateWindow()}


def test_recent_window_is_the_last_days_including_today_with_no_upper_bound():
    last_full = {USER: dt.datetime(2026, 11, 30, 2, 15, tzinfo=dt.UTC)}
    windows = plan.scope_windows([USER], recent_days=30, full_every_days=7, last_full=last_full,
                                 today=TODAY)
    assert windows[USER] == DateWindow(TODAY - 29 * DAY, None)
    assert TODAY in windows[USER] and TODAY + 30 * DAY in windows[USER]
    assert TODAY - 30 * DAY not in windows[USER]


@pytest.mark.parametrize(("days_ago", "full"), [(0, False), (6, False), (7, True), (30, True)])
def test_a_full_read_is_due_every_full_every_days(days_ago, full):
    """Counted in UTC calendar days, so that a nightly cron line reads in full every
    seventh night, whatever minute each run finished."""
    last = dt.datetime.combine(TODAY - days_ago * DAY, dt.time(23, 59), dt.UTC)
    windows = plan.scope_windows([USER, WORKSPACE], recent_days=3, full_every_days=7,
                                 last_full={USER: last}, today=TODAY)
    assert (windows[USER] == DateWindow()) is full
    assert windows[WORKSPACE] == DateWindow()  # never read in full: due


# --- sizes from history ------------------------------------------------------------------

def test_a_scope_too_large_for_its_share_is_cut_into_equal_pieces():
    busy = {START + i * DAY: 55 for i in range(730)}  # 40,150 entries: 402 pages
    listings = plan.plan([(WORKSPACE, DateWindow())], {WORKSPACE: history(busy)}, feed=7,
                         page_size=100)
    assert len(listings) == 7
    assert_partition([x.window for x in sorted(listings, key=lambda x: x.window.since or START)],
                     DateWindow(), START - 10 * DAY, TODAY + 10 * DAY)
    sizes = [x.pages for x in listings]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) <= 402 + 7
    # the largest piece, read alone at full speed, ends with the run
    assert max(sizes) <= 402 / 7 + 1


def test_a_skewed_history_cuts_where_the_entries_are():
    # a company that grew: three times the entries in the second year
    grown = {START + i * DAY: 20 if i < 365 else 60 for i in range(730)}
    listings = plan.plan([(WORKSPACE, DateWindow())], {WORKSPACE: history(grown)}, feed=4,
                         page_size=100)
    ordered = sorted(listings, key=lambda x: x.window.since or START)
    assert len(ordered) == 4
    first_year = [x for x in ordered if x.window.until is not None
                  and x.window.until < START + 365 * DAY]
    assert len(first_year) == 1  # a quarter of the entries were in the first year
    assert max(x.pages for x in ordered) - min(x.pages for x in ordered) <= 1


def test_listings_come_largest_first_and_unknown_scopes_before_all():
    small, big, new = Scope("user", "2"), Scope("user", "3"), Scope("user", "4")
    known = {
        small: history({START: 30}),
        big: history({START + i * DAY: 10 for i in range(300)}),  # 30 pages
    }
    listings = plan.plan([(small, DateWindow()), (big, DateWindow()), (new, DateWindow())],
                         known, feed=20, page_size=100)
    assert listings[0] == Listing(new, DateWindow(), None)
    assert [x.scope for x in listings[1:]] == [big] * (len(listings) - 2) + [small]
    assert listings[-1].pages == 1


def test_small_scopes_are_not_cut_and_a_single_day_cannot_be():
    one_day = {START + 9 * DAY: 5000}  # 50 pages, all on one day
    few = {START + i * DAY: 3 for i in range(100)}  # 3 pages
    listings = plan.plan([(USER, DateWindow()), (WORKSPACE, DateWindow())],
                         {USER: history(few), WORKSPACE: history(one_day)}, feed=16,
                         page_size=100)
    assert sorted((x.scope, x.window) for x in listings) == [
        (USER, DateWindow()), (WORKSPACE, DateWindow())]


def test_no_piece_is_planned_below_the_minimum():
    busy = {START + i * DAY: 10 for i in range(100)}  # 10 pages
    listings = plan.plan([(USER, DateWindow())], {USER: history(busy)}, feed=16, page_size=100)
    assert len(listings) == 10 // plan.MIN_PIECE_PAGES
    assert all(x.pages >= plan.MIN_PIECE_PAGES for x in listings)


def test_history_outside_the_window_is_left_out_and_the_window_is_kept():
    recent = DateWindow(TODAY - 29 * DAY, None)
    busy = {START + i * DAY: 50 for i in range(730)}
    listings = plan.plan([(WORKSPACE, recent)], {WORKSPACE: history(busy)}, feed=4,
                         page_size=100)
    ordered = sorted(listings, key=lambda x: x.window.since)
    assert_partition([x.window for x in ordered], recent, START, TODAY + 30 * DAY)
    assert sum(x.pages for x in ordered) <= math.ceil(30 * 50 / 100) + len(ordered)


def test_one_listing_a_scope_when_one_at_a_time_is_all_the_budget_feeds():
    busy = {START + i * DAY: 55 for i in range(730)}
    listings = plan.plan([(WORKSPACE, DateWindow())], {WORKSPACE: history(busy)}, feed=1,
                         page_size=100)
    assert listings == [Listing(WORKSPACE, DateWindow(), 402)]


# --- a first page: estimate and split ------------------------------------------------------

def page_in_order(per_day: float, first: dt.date, n: int = 100) -> tuple[list[str], list[dt.date]]:
    """The first page of a listing in the order entries were made, `per_day` a day."""
    days = [first + int(i / per_day) * DAY for i in range(n)]
    return [str(1_000_000 + i) for i in range(n)], days


def test_a_page_in_gid_order_is_in_the_order_made_and_a_shuffled_one_is_not():
    gids, _ = page_in_order(5, START)
    assert plan.in_order_made(gids)
    shuffled = gids[:]
    random.Random(1).shuffle(shuffled)
    assert not plan.in_order_made(shuffled)
    assert not plan.in_order_made(gids[:1])


@pytest.mark.parametrize("per_day", [0.6, 6, 55])
def test_the_size_of_a_listing_in_the_order_made_is_read_off_its_first_page(per_day):
    _, days = page_in_order(per_day, START)
    estimate = plan.estimate_pages(DateWindow(), days, True, TODAY)
    actual = per_day * 730 / 100
    assert actual / 1.5 <= estimate <= actual * 1.5
    # a window's upper bound ends the span; a page in no particular order says nothing
    window = DateWindow(None, START + 99 * DAY)
    assert plan.estimate_pages(window, days, True, TODAY) <= max(1.0, per_day * 100 / 100) * 1.5
    assert plan.estimate_pages(DateWindow(), days, False, TODAY) is None


def test_a_page_in_the_order_made_is_split_into_equal_spans():
    _, days = page_in_order(55, START)
    windows = plan.split(DateWindow(), days, True, 8, TODAY)
    assert len(windows) == 8
    assert_partition(windows, DateWindow(), START - 10 * DAY, TODAY + 10 * DAY)
    spans = [(w.until - w.since).days + 1 for w in windows[1:-1]]
    assert max(spans) - min(spans) <= 1


def test_a_page_in_no_order_is_split_at_its_quantiles():
    rng = random.Random(2)
    # a sample of a listing whose entries crowd into its last quarter
    days = sorted(START + rng.randrange(550, 730) * DAY if i % 5 else START + rng.randrange(550) * DAY
                  for i in range(100))
    rng.shuffle(days)
    windows = plan.split(DateWindow(), days, False, 4, TODAY)
    assert len(windows) == 4
    assert_partition(windows, DateWindow(), START - 10 * DAY, TODAY + 10 * DAY)
    counts = [sum(d in w for d in days) for w in windows]
    assert max(counts) - min(counts) <= 10


def test_a_window_of_one_day_is_not_split_and_a_split_keeps_the_window():
    day = START + 40 * DAY
    assert plan.split(DateWindow(day, day), [day] * 100, True, 4, TODAY) == [DateWindow(day, day)]
    window = DateWindow(START + 10 * DAY, START + 60 * DAY)
    _, days = page_in_order(20, START + 10 * DAY)
    windows = plan.split(window, days, True, 3, TODAY)
    assert len(windows) == 3
    assert_partition(windows, window, START, TODAY)


def test_what_is_left_of_a_listing_in_the_order_made_corrects_itself_page_by_page():
    per_day = 55  # a dense workspace: a page is under two days
    window = DateWindow(START, START + 99 * DAY)  # 5,500 entries, 55 pages
    entries = [START + (i // per_day) * DAY for i in range(5500)]
    first = plan.progress(window, entries[:100], TODAY)
    errors = []
    for read in range(1, 55):
        page = entries[(read - 1) * 100:read * 100]
        at = plan.progress(window, page, TODAY)
        days = (first[0], at[1], max(first[2], at[2]))
        measured = plan.pages_left(*days, read=read)
        if plan.covered(*days) >= 0.1:
            errors.append(abs(measured - (55 - read)) / 55)
    assert max(errors) < 0.1
    # early on a planned size counts for more than the coarse measure; late, less
    early = (START, START + DAY, START + 99 * DAY)
    assert abs(plan.remaining(55, 1, early) - 54) < 2
    assert plan.remaining(55, 1, None) == 54 and plan.remaining(None, 3, None) is None
    late = (START, START + 89 * DAY, START + 99 * DAY)
    assert plan.remaining(30, 50, late) == pytest.approx(
        0.9 * plan.pages_left(*late, read=50), rel=0.01)


# --- how many listings the budget feeds ----------------------------------------------------

def test_the_budget_feeds_as_many_listings_as_requests_in_flight_it_allows(split_as_shipped):
    assert plan.feedable(25, 0.2, 16) == math.ceil(25 * 0.2 * plan.FEED_MARGIN)
    assert plan.feedable(25, 0.8, 16) == 16  # capped by concurrency
    assert plan.feedable(25, 0.01, 16) == 1  # fast: the CPU sets the pace, nothing is split
    assert plan.feedable(2.5, 0.2, 16) == 1  # a free plan's 150 a minute


# --- history is trusted only for the days a complete read covered ---------------------

QUARTER = DateWindow(dt.date(2026, 7, 1), dt.date(2026, 9, 30))


def every_day(lo: dt.date, hi: dt.date, n: int = 50) -> list[tuple[dt.date, int]]:
    return [(lo + i * DAY, n) for i in range((hi - lo).days + 1)]


def test_after_a_backfill_of_a_quarter_only_the_quarter_is_sized_the_rest_is_probed():
    # the database holds the quarter alone: the months around it are not empty, unknown
    history = {WORKSPACE: every_day(QUARTER.since, QUARTER.until)}
    listings = plan.plan([(WORKSPACE, DateWindow())], history, feed=7, page_size=100,
                         covered={WORKSPACE: [QUARTER]}, today=TODAY)
    unknown = [x.window for x in listings if x.pages is None]
    assert unknown == [DateWindow(None, dt.date(2026, 6, 30)), DateWindow(dt.date(2026, 10, 1))]
    sized = [x for x in listings if x.pages is not None]
    assert len(sized) == 7 and all(x.window.since and x.window.until for x in sized)
    assert sum(x.pages for x in sized) == pytest.approx(92 * 50 / 100, abs=7)
    assert_partition(sorted((x.window for x in listings), key=lambda w: w.since or dt.date.min),
                     DateWindow(), START, TODAY)


def test_after_a_recent_first_night_the_older_days_are_probed_and_last_night_is_sized():
    # `sync --recent 30` read the last 30 days yesterday; the nights since are sized at
    # their neighbours' density, the days before are unknown
    yesterday = TODAY - DAY
    recent = DateWindow(yesterday - 29 * DAY, yesterday)
    history = {USER: every_day(recent.since, recent.until, 200)}
    listings = plan.plan([(USER, DateWindow())], history, feed=7, page_size=100,
                         covered={USER: [recent]}, today=TODAY)
    assert [x.window for x in listings if x.pages is None] == [
        DateWindow(None, recent.since - DAY)]
    sized = [x for x in listings if x.pages is not None]
    assert any(x.window.until is None for x in sized)  # today and later: with the sized
    assert sum(x.pages for x in sized) == pytest.approx(31 * 200 / 100, abs=len(sized))


def test_a_scope_added_to_a_config_with_history_is_probed_whatever_the_database_holds():
    other = Scope("project", "5")
    history = {WORKSPACE: every_day(START, TODAY), other: every_day(START, TODAY, 5)}
    listings = plan.plan([(WORKSPACE, DateWindow()), (other, DateWindow())], history, feed=7,
                         page_size=100, covered={WORKSPACE: [DateWindow(None, TODAY)]},
                         today=TODAY)
    assert [x for x in listings if x.scope == other] == [Listing(other, DateWindow(), None)]
    assert all(x.pages is not None for x in listings if x.scope == WORKSPACE)


@pytest.mark.parametrize("nights, sized", [(1, True), (7, True), (8, False)])
def test_the_nights_since_a_full_read_are_sized_up_to_a_week(nights, sized):
    read = DateWindow(None, TODAY - nights * DAY)
    stretches = coverage.segments(DateWindow(), [read], TODAY)
    if sized:
        assert stretches == [coverage.Stretch(DateWindow(), True, tuple(
            TODAY - i * DAY for i in range(nights - 1, -1, -1)))]
    else:
        assert [(s.window, s.sized) for s in stretches] == [
            (read, True), (DateWindow(read.until + DAY, None), False)]


def test_the_days_since_are_sized_at_the_density_of_the_covered_days_next_to_them():
    read = DateWindow(None, TODAY - 2 * DAY)
    history = {USER: every_day(START, read.until, 100)}
    listings = plan.plan([(USER, DateWindow())], history, feed=1, page_size=100,
                         covered={USER: [read]}, today=TODAY)
    assert listings == [Listing(USER, DateWindow(), 730)]  # 728 days read + 2 at 100 a day


def test_covered_windows_that_overlap_or_touch_make_one_stretch_and_gaps_stay_unknown():
    a = DateWindow(dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    b = DateWindow(dt.date(2026, 3, 15), dt.date(2026, 4, 30))
    c = DateWindow(dt.date(2026, 5, 1), dt.date(2026, 5, 31))
    d = DateWindow(dt.date(2026, 8, 1), dt.date(2026, 8, 31))
    stretches = coverage.segments(DateWindow(dt.date(2025, 12, 1), dt.date(2026, 9, 30)),
                              [d, c, b, a], TODAY)
    assert [(s.window, s.sized) for s in stretches] == [
        (DateWindow(dt.date(2025, 12, 1), dt.date(2025, 12, 31)), False),
        (DateWindow(dt.date(2026, 1, 1), dt.date(2026, 5, 31)), True),
        (DateWindow(dt.date(2026, 6, 1), dt.date(2026, 7, 31)), False),
        (DateWindow(dt.date(2026, 8, 1), dt.date(2026, 8, 31)), True),
        (DateWindow(dt.date(2026, 9, 1), dt.date(2026, 9, 30)), False),  # a month: unknown
    ]


@pytest.mark.parametrize("pages, others, feed, expected", [
    (400, 0, 7, 7),      # alone: pieces of a seventh
    (50, 350, 7, 1),     # no more than its share
    (120, 280, 7, 2),    # twice its share
    (12, 0, 7, 2),       # never below the least piece
    (4, 0, 7, 1),
    (1000, 100, 2, 2),
])
def test_a_listing_is_cut_into_pieces_of_its_share_of_the_run(pages, others, feed, expected):
    assert plan.pieces(pages, others, feed) == expected


def test_years_of_nightly_recent_windows_plan_as_the_days_they_cover():
    # three years of `sync --recent 30` nights, and a full read a week: what the store
    # gives back is a window a night, overlapping; the plan is that of their union
    nights = [DateWindow(TODAY - (n + 29) * DAY, TODAY - n * DAY) for n in range(1, 1096)]
    fulls = [DateWindow(None, TODAY - n * DAY) for n in range(3, 1096, 7)]
    history = {USER: every_day(TODAY - 1200 * DAY, TODAY - DAY, 30)}
    many = plan.plan([(USER, DateWindow())], history, feed=7, page_size=100,
                     covered={USER: nights + fulls}, today=TODAY)
    one = plan.plan([(USER, DateWindow())], history, feed=7, page_size=100,
                    covered={USER: [DateWindow(None, TODAY - DAY)]}, today=TODAY)
    assert many == one and all(x.pages is not None for x in many)
    assert coverage.merged(nights + fulls) == [DateWindow(None, TODAY - DAY)]
