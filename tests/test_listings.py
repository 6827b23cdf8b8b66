"""Listings over HTTP: windows asked of Asana, scopes read as several date windows, and
`sync --recent`, against the simulated Asana, on data of the last four months.

Client-side behaviour: SQLite only (the database side of listings is in test_pipeline).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections import Counter

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.store import runs, schema
from etl.cli import cli
from etl.config import DateWindow, Scope, SyncSettings
from etl.run.dryrun import run_dry_run
from etl.run.pipeline import run_backfill, run_sync
from etl.simulator import Dataset
from tests.helpers import TOKEN, expected_rows, stored_rows

DAY = dt.timedelta(days=1)
TODAY = runs.utcnow().date()
#: Read again before each test (tests/conftest.py `_within_one_day`).
TODAY_FROM_CLOCK = True


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'listings.db'}"


@pytest.fixture
def dataset() -> Dataset:
    """Four months up to today (entries made on or near their day, users skewed)."""
    return Dataset.generate(seed=12, entries=800, users=6, projects=4, portfolios=1, tasks=20,
                            start=TODAY - 119 * DAY, days=120)


def workspace(data: Dataset) -> Scope:
    return Scope("workspace", data.workspace_gid)


def listed(server) -> list:
    """The listing requests (not the preflight, the bounds probe or confirmations)."""
    return [r for r in server.requests if r.path.endswith("/time_tracking_entries")
            and "opt_fields" in r.params and "created_by" in r.params["opt_fields"]]


def first_pages(server) -> list:
    return [r for r in listed(server) if "offset" not in r.params]


def scope_rows(engine) -> dict:
    with engine.connect() as conn:
        return {(r.scope_type, r.scope_gid): r for r in conn.execute(
            sa.select(schema.sync_run_scopes).where(schema.sync_run_scopes.c.run_id == sa.select(
                sa.func.max(schema.sync_runs.c.id)).scalar_subquery()))}


def deleted_gids(engine) -> set[str]:
    t = schema.time_tracking_entries
    with engine.connect() as conn:
        return set(conn.execute(sa.select(t.c.gid).where(t.c.deleted_at.is_not(None))).scalars())


def inside(rows: dict, window: DateWindow) -> dict:
    return {g: r for g, r in rows.items() if r["entered_on"] in window}


def add_on(data: Dataset, days: list[dt.date], per_day: int = 3) -> list[str]:
    task, user = next(iter(data.tasks)), next(iter(data.users))
    return [data.add_entry(task, user, 10 + i, day).gid for day in days for i in range(per_day)]


# --- windows asked of Asana ----------------------------------------------------------------

@pytest.mark.parametrize("exclusive", [False, True], ids=["inclusive", "exclusive"])
def test_a_backfill_asks_for_its_window_and_loses_no_boundary_day(
    asana_server, make_settings, engine, sleep, exclusive
):
    data = asana_server.dataset
    asana_server.exclusive_bounds = exclusive
    since, until = TODAY - 60 * DAY, TODAY - 31 * DAY
    add_on(data, [since - DAY, since, until, until + DAY])  # the boundary days, and beyond
    window = DateWindow(since, until)
    user = Scope("user", next(iter(data.users)))
    result = run_backfill(make_settings([workspace(data), user], page_size=20), window=window,
                          sleep=sleep)

    assert result.status == "succeeded"
    assert stored_rows(engine) == inside(expected_rows(data), window)
    # the window went to Asana, a day wider at each end (its reading of bounds unknown)
    assert {(r.params["entered_on_start_date"], r.params["entered_on_end_date"])
            for r in listed(asana_server)} == {(str(since - DAY), str(until + DAY))}
    served = window if exclusive else DateWindow(since - DAY, until + DAY)
    held = {s: sum(e.entered_on in served and (s == workspace(data) or e.user_gid == s.gid)
                   for e in data.entries.values())
            for s in (workspace(data), user)}
    assert len(listed(asana_server)) == sum(max(1, math.ceil(n / 20)) for n in held.values())
    rows = scope_rows(engine)
    assert {(r.window_since, r.window_until) for r in rows.values()} == {(since, until)}
    assert all(r.listings == 1 for r in rows.values())


def test_a_backfill_deletes_only_inside_its_window(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    since, until = TODAY - 60 * DAY, TODAY - 31 * DAY
    edge = add_on(data, [since, until, since - DAY, until + DAY], per_day=1)
    settings = make_settings([workspace(data)])
    run_sync(settings, sleep=sleep)
    for gid in edge:
        data.delete_entry(gid)
    result = run_backfill(settings, window=DateWindow(since, until), sleep=sleep)
    assert deleted_gids(engine) == set(edge[:2]) and result.counts.deleted == 2


# --- a scope read as several listings ------------------------------------------------------

@pytest.mark.parametrize("exclusive", [False, True], ids=["inclusive", "exclusive"])
def test_a_workspace_split_on_its_first_page_loads_every_entry_once(
    splitting, asana_server, make_settings, engine, sleep, exclusive
):
    data = asana_server.dataset
    asana_server.exclusive_bounds = exclusive
    add_on(data, [TODAY - 100 * DAY, TODAY - 50 * DAY, TODAY, TODAY + 5 * DAY])
    result = run_sync(make_settings([workspace(data)], page_size=10, concurrency=6), sleep=sleep)

    assert result.status == "succeeded"
    assert stored_rows(engine) == expected_rows(data)
    scope = result.scopes[0]
    assert scope.listings >= 4  # split while fewer listings ran than the budget feeds
    # each entry counted once, as one listing would: the windows partition the days
    assert scope.counts.entries == scope.counts.inserted == len(data.entries)
    probe = [r for r in asana_server.requests if r.params.get("limit") == "10"
             and "created_by" not in r.params.get("opt_fields", "")]
    assert len(probe) == 1  # the bounds probe, once
    starts = {dt.date.fromisoformat(r.params["entered_on_start_date"])
              for r in first_pages(asana_server) if "entered_on_end_date" in r.params
              or r.params.get("entered_on_start_date", "1900-01-01") != "1900-01-01"
              if "entered_on_start_date" in r.params}
    ends = {dt.date.fromisoformat(r.params["entered_on_end_date"])
            for r in first_pages(asana_server) if "entered_on_end_date" in r.params}
    exact = {e for e in ends if e + DAY in starts}  # neighbours asked edge to edge
    widened = {e for e in ends if e - DAY in starts}  # neighbours asked a day into each other
    if exclusive:  # not proved inclusive: every inner bound a day wider
        assert widened and not exact
    else:  # proved inclusive by the probe: asked exactly, no day read twice
        assert exact and not widened
    rows = scope_rows(engine)[("workspace", data.workspace_gid)]
    assert rows.listings == scope.listings and rows.requests == scope.requests


def asked(request) -> DateWindow:
    """The days a listing request asked for."""
    since, until = (request.params.get(f"entered_on_{end}_date") for end in ("start", "end"))
    return DateWindow(since and dt.date.fromisoformat(since), until and dt.date.fromisoformat(until))


def near(day: dt.date | None, expected: dt.date) -> bool:
    """`day` is `expected`, or a day off (a bound asked a day wider)."""
    return day is not None and abs((day - expected).days) <= 1


def test_after_a_backfill_the_first_full_sync_probes_the_days_it_did_not_read(
    splitting, asana_server, make_settings, engine, sleep
):
    # the database knows one month of four: the other three are not empty, they are
    # unknown, and read as on a first run (probed, and split on their first page)
    data = asana_server.dataset
    backfill = DateWindow(TODAY - 89 * DAY, TODAY - 60 * DAY)
    settings = make_settings([workspace(data)], page_size=10, concurrency=6)
    run_backfill(settings, window=backfill, sleep=sleep)
    asana_server.requests.clear()
    result = run_sync(settings, sleep=sleep)

    assert result.status == "succeeded" and stored_rows(engine) == expected_rows(data)
    windows = [asked(r) for r in first_pages(asana_server)]
    # each stretch the backfill did not read was asked as a listing of its own
    assert any(w.since is None and near(w.until, backfill.since - DAY) for w in windows)
    assert any(near(w.since, backfill.until + DAY) and w.until is None for w in windows)
    # the 59 days after it held about 400 entries: the probe's page split them
    pieces = [w for w in windows if w.since and w.since > backfill.until + 2 * DAY]
    assert len(pieces) >= 2
    assert result.scopes[0].counts.entries == len(data.entries)  # each entry once


def test_a_scope_whose_runs_all_failed_is_probed_whatever_the_database_holds(
    splitting, asana_server, make_settings, engine, sleep, caplog
):
    caplog.set_level(logging.INFO)
    data = asana_server.dataset
    sizes = Counter(e.user_gid for e in data.entries.values())
    user = Scope("user", max(sizes, key=sizes.get))
    settings = make_settings([workspace(data)], page_size=10, concurrency=6)
    run_sync(settings, sleep=sleep)  # the workspace: every entry of the user is loaded
    failing = [True]
    asana_server.add_fault(500, times=50,
                           when=lambda p, q: failing[0] and "offset" in q and "user" in q)
    added = make_settings([workspace(data), user], page_size=10, concurrency=6, max_retries=1)
    failed = run_sync(added, sleep=sleep)  # a scope added: its first run fails on page 2
    assert [s.status for s in failed.scopes if s.scope == user] == ["failed"]
    failing[0] = False
    asana_server.requests.clear()
    caplog.clear()

    result = run_sync(added, sleep=sleep)
    assert result.status == "succeeded" and stored_rows(engine) == expected_rows(data)
    # no complete read of the user's scope yet: one listing of unknown size (asked first,
    # though with six workers sending at once the server may see others before it), and
    # no size said for it, whatever the database holds of its entries
    theirs = [r for r in first_pages(asana_server) if r.params.get("user") == user.gid]
    assert asked(theirs[0]) == DateWindow()
    said = planned(caplog)
    assert said[str(user)]["estimated_pages"] is None
    assert said[str(workspace(data))]["sized_windows"] == said[str(workspace(data))]["windows"]


def planned(caplog) -> dict[str, dict]:
    """What the latest run said it expects of each scope (its `listing_planned` lines)."""
    said = {}
    for record in caplog.records:
        if getattr(record, "event", None) == "listing_planned":
            said[record.getMessage().split()[1].rstrip(":")] = record.fields
    return said


def test_the_pages_a_run_expects_come_within_a_quarter_of_what_it_reads(
    splitting, asana_server, make_settings, engine, sleep, caplog
):
    caplog.set_level(logging.INFO)
    data = asana_server.dataset
    sizes = Counter(e.user_gid for e in data.entries.values())
    scopes = [workspace(data)] + [Scope("user", u) for u in sorted(sizes, key=sizes.get)[-3:]]
    settings = make_settings(scopes, page_size=10, concurrency=6)
    run_sync(settings, sleep=sleep)
    add_on(data, [TODAY], per_day=12)  # a night's new entries, on a day no read covered
    caplog.clear()
    result = run_sync(settings, sleep=sleep)

    said = planned(caplog)
    for scope in result.scopes:
        expected = said[str(scope.scope)]
        assert expected["sized_windows"] == expected["windows"] == scope.listings
        assert abs(expected["estimated_pages"] - scope.pages) <= 0.25 * scope.pages, scope


def test_split_listings_survive_faults_and_data_that_shifts(
    splitting, asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings([workspace(data), Scope("user", next(iter(data.users)))],
                             page_size=10, concurrency=6, max_retries=6)
    run_sync(settings, sleep=sleep)

    entries = sorted(data.entries.values(), key=lambda e: e.gid)
    gone = [e.gid for e in entries[5:8]]
    moved = [e for e in entries[100:104]]
    seen = Counter()

    def shift(path, params):
        seen["n"] += 1
        if seen["n"] == 25:  # mid-run: delete, add, and move entries across windows
            for gid in gone:
                data.delete_entry(gid)
            add_on(data, [TODAY - 10 * DAY])
            for e in moved:
                data.edit_entry(e.gid, entered_on=e.entered_on + 40 * DAY if
                                e.entered_on + 40 * DAY <= TODAY else e.entered_on - 40 * DAY)

    asana_server.before_answer = shift
    for kind, times in ((500, 3), ("reset", 2), (429, 2), ("expire_offset", 1)):
        asana_server.add_fault(kind, times=times, retry_after=1,
                               when=lambda p, q: "offset" in q or q.get("limit") == "10")
    result = run_sync(settings, sleep=sleep)
    asana_server.before_answer = None

    assert result.status == "succeeded"
    assert max(s.listings for s in result.scopes) > 1
    assert deleted_gids(engine) <= set(gone)  # nothing live was marked deleted
    run_sync(settings, sleep=sleep)
    assert stored_rows(engine) == expected_rows(data)
    assert deleted_gids(engine) == set(gone)


def test_an_expired_offset_restarts_only_its_own_listing(
    splitting, asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings([workspace(data)], page_size=10, concurrency=6)
    run_sync(settings, sleep=sleep)  # history: the next sync is planned in windows
    asana_server.requests.clear()
    asana_server.add_fault("expire_offset", times=1, when=lambda p, q: "offset" in q)
    result = run_sync(settings, sleep=sleep)

    assert result.status == "succeeded" and result.scopes[0].listings > 1
    assert scope_rows(engine)[("workspace", data.workspace_gid)].restarts == 1
    queries = Counter((r.params.get("entered_on_start_date"), r.params.get("entered_on_end_date"))
                      for r in first_pages(asana_server))
    assert sorted(queries.values())[-2:] == [1, 2]  # one listing from its start again
    assert stored_rows(engine) == expected_rows(data)


def test_a_listing_that_fails_fails_its_scope_and_deletes_nothing(
    splitting, asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    user = Scope("user", next(iter(data.users)))
    settings = make_settings([workspace(data), user], page_size=10, concurrency=6, max_retries=1)
    run_sync(settings, sleep=sleep)
    gone = sorted(data.entries)[:20]
    theirs = {g for g in gone if data.entries[g].user_gid == user.gid}
    for gid in gone:
        data.delete_entry(gid)
    late = str(TODAY - 40 * DAY)
    asana_server.add_fault(503, times=1000, when=lambda p, q: q.get("workspace") is not None
                           and q.get("entered_on_start_date", "") >= late)
    result = run_sync(settings, sleep=sleep)

    assert result.status == "partial"
    rows = scope_rows(engine)
    assert rows[("workspace", data.workspace_gid)].status == "failed"
    assert "HTTP 503" in rows[("workspace", data.workspace_gid)].error
    assert rows[("user", user.gid)].status == "succeeded"
    assert theirs and deleted_gids(engine) == theirs  # through the user scope only


def test_the_largest_listings_go_first(splitting, asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    sizes = Counter(e.user_gid for e in data.entries.values())
    users = [Scope("user", u) for u in sorted(sizes, key=sizes.get)]  # smallest first
    settings = make_settings(users, page_size=10, concurrency=2)
    run_sync(settings, sleep=sleep)
    asana_server.requests.clear()
    run_sync(settings, sleep=sleep)  # sized by history now
    assert {r.params["user"] for r in first_pages(asana_server)[:2]} == {
        u.gid for u in users[-2:]}


def test_a_server_that_ignores_the_dates_stops_the_splitting(
    splitting, asana_server, make_settings, engine, sleep, caplog
):
    caplog.set_level(logging.INFO)
    data = asana_server.dataset
    asana_server.ignores_dates = True
    result = run_sync(make_settings([workspace(data)], page_size=10, concurrency=6), sleep=sleep)
    assert result.status == "succeeded"
    assert stored_rows(engine) == expected_rows(data)
    assert result.scopes[0].counts.entries == len(data.entries)  # each once all the same
    assert "ignore the date bounds" in caplog.text
    assert caplog.text.count("split into") == 1  # the windows begun read everything; no more


def test_confirmations_go_side_by_side_and_are_written_in_batches(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings([workspace(data)], concurrency=8)
    run_sync(settings, sleep=sleep)
    gone = sorted(data.entries)[::2]
    for gid in gone:
        data.delete_entry(gid)
    commits = Counter()

    def count(conn) -> None:
        commits["commit"] += 1

    sa.event.listen(sa.engine.Engine, "commit", count)
    asana_server.latency = 0.02  # long enough for requests side by side to overlap there
    try:
        result = run_sync(settings, sleep=sleep)
    finally:
        sa.event.remove(sa.engine.Engine, "commit", count)
    assert result.counts.deleted == len(gone) == 400
    assert deleted_gids(engine) == set(gone)
    confirmations = [r for r in asana_server.requests if r.path.count("/") == 4]
    assert len(confirmations) == len(gone)
    assert max(r.in_flight for r in confirmations) > 1  # side by side
    assert commits["commit"] < len(gone) / 4  # a batch at a time, not a transaction each


# --- sync --recent -------------------------------------------------------------------------

def test_a_recent_sync_sees_its_days_and_the_next_full_sync_the_rest(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings([workspace(data)] + [Scope("user", u) for u in data.users],
                             page_size=20)
    first = run_sync(settings, recent_days=30, sleep=sleep)  # never read in full: in full
    assert {r.window_since for r in scope_rows(engine).values()} == {None}
    assert first.status == "succeeded"

    window = DateWindow(TODAY - 29 * DAY, None)
    recent = sorted(g for g, e in data.entries.items() if e.entered_on in window)
    old = sorted(g for g, e in data.entries.items() if e.entered_on not in window)
    data.edit_entry(recent[0], duration_minutes=999)
    data.delete_entry(recent[1])
    data.edit_entry(recent[2], entered_on=TODAY - 45 * DAY)  # moved out of the window
    data.edit_entry(old[0], entered_on=TODAY - 2 * DAY)  # moved into it
    data.edit_entry(old[1], duration_minutes=998)  # too old for a recent read to see
    data.delete_entry(old[2])
    added = add_on(data, [TODAY - 29 * DAY, TODAY, TODAY + 3 * DAY], per_day=1)
    add_on(data, [TODAY - 30 * DAY], per_day=1)  # the day before the window

    asana_server.requests.clear()
    result = run_sync(settings, recent_days=30, sleep=sleep)
    assert result.status == "succeeded"
    rows = scope_rows(engine)
    assert {(r.window_since, r.window_until) for r in rows.values()} == {(TODAY - 29 * DAY, None)}
    assert {r.params["entered_on_start_date"] for r in listed(asana_server)} == {
        str(TODAY - 30 * DAY)}  # a day wider: its reading of bounds unknown
    assert all("entered_on_end_date" not in r.params for r in listed(asana_server))

    stored, expected = stored_rows(engine), expected_rows(data)
    assert inside(stored, window) == inside(expected, window)  # every change in its days
    assert stored[recent[2]] == expected[recent[2]]  # moved out: found by its confirmation
    assert recent[1] in deleted_gids(engine) and result.counts.deleted == 1
    assert stored[old[1]]["duration_minutes"] != 998 and old[2] in stored  # not seen yet
    assert set(added) <= set(stored)
    confirmations = {r.path.rsplit("/", 1)[1] for r in asana_server.requests
                     if r.path.count("/") == 4}
    assert confirmations == {recent[1], recent[2]}

    run_sync(settings, recent_days=0, sleep=sleep)  # a full read finds the rest
    assert stored_rows(engine) == expected_rows(data)
    assert deleted_gids(engine) == {recent[1], old[2]}


def test_a_full_read_comes_round_every_full_every_days(asana_server, make_settings, engine,
                                                       sleep):
    data = asana_server.dataset
    settings = dataclasses.replace(make_settings([workspace(data)]),
                                   sync=SyncSettings(recent_days=7, full_every_days=3))
    run_sync(settings, sleep=sleep)
    assert scope_rows(engine)[("workspace", data.workspace_gid)].window_since is None
    run_sync(settings, sleep=sleep)
    assert scope_rows(engine)[("workspace", data.workspace_gid)].window_since == TODAY - 6 * DAY

    def age_full_reads(days: int) -> None:
        s = schema.sync_run_scopes
        with engine.begin() as conn:
            conn.execute(sa.update(s).where(s.c.window_since.is_(None)).values(
                finished_at=runs.utcnow() - dt.timedelta(days=days)))

    age_full_reads(3)
    run_sync(settings, sleep=sleep)
    assert scope_rows(engine)[("workspace", data.workspace_gid)].window_since is None

    # status: each scope's last full read; --check flags one older than twice the period
    age_full_reads(7)
    env = {"ASANA_ETL_DATABASE_URL": settings.database_url, "ASANA_ACCESS_TOKEN": TOKEN}
    config = engine.url.database + ".toml"
    with open(config, "w") as f:
        f.write(f'[sync]\nrecent_days = 7\nfull_every_days = 3\n[scopes]\nworkspace = '
                f'"{data.workspace_gid}"\n')
    out = CliRunner().invoke(cli, ["--config", config, "status"], env=env)
    row = next(line for line in out.output.splitlines() if f"workspace:{data.workspace_gid}" in line)
    assert out.exit_code == 0 and "last full read" in out.output
    assert row.split()[:2] == ["STALE", f"workspace:{data.workspace_gid}"] and "7.0 d ago" in row
    check = CliRunner().invoke(cli, ["--config", config, "status", "--check"], env=env)
    assert check.exit_code == 1 and "no full read in 6 days" in check.output
    with engine.connect() as conn:
        scope = runs.freshness(conn, settings.scopes, dt.timedelta(hours=36), runs.utcnow(),
                               full_stale_after=dt.timedelta(days=6))[0]
    assert scope["full_read_stale"] and scope["stale"] and scope["age_hours"] < 1
    # full_every_days = 0 (every sync reads in full): a fresh success is all it takes
    run_sync(dataclasses.replace(settings, sync=SyncSettings(full_every_days=0)), sleep=sleep)
    with open(config, "w") as f:
        f.write(f'[sync]\nfull_every_days = 0\n[scopes]\nworkspace = "{data.workspace_gid}"\n')
    check = CliRunner().invoke(cli, ["--config", config, "status", "--check"], env=env)
    assert check.exit_code == 0, check.output


def test_a_dry_run_asks_for_the_same_windows(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    settings = make_settings([workspace(data)])
    run_sync(settings, sleep=sleep)
    recent = sorted(g for g, e in data.entries.items() if e.entered_on >= TODAY - 9 * DAY)
    data.delete_entry(recent[0])
    data.edit_entry(recent[1], duration_minutes=997)
    asana_server.requests.clear()
    dry = run_dry_run(settings, recent_days=10, sleep=sleep)
    assert (dry.delete, dry.update, dry.windowed) == (1, 1, 1)
    assert dry.entries == sum(e.entered_on >= TODAY - 9 * DAY for e in data.entries.values())
    assert {r.params["entered_on_start_date"] for r in listed(asana_server)} == {
        str(TODAY - 10 * DAY)}
