"""Categories, weekly timesheet approvals and rates (`[details] categories`, `timesheets`,
`rates`) over HTTP against the simulated Asana, on every backend: stored exactly, kept up
to date, never rewritten when unchanged, refused plainly without the add-on; and the
views and README queries BI uses, the same on every backend."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.config import DetailsSettings, Scope
from etl.run.pipeline import run_sync
from etl.simulator import Dataset
from etl.store import schema
from tests.helpers import table_snapshot

TODAY = dt.datetime.now(dt.UTC).date()
#: Read again before each test (tests/conftest.py `_within_one_day`).
TODAY_FROM_CLOCK = True
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def dataset() -> Dataset:
    """Ten weeks up to today (recent weeks not yet approved), 8 categories (some
    archived), rates for some (project, person) pairs."""
    return Dataset.generate(seed=8, entries=300, users=6, projects=4, portfolios=1, tasks=20,
                            start=TODAY - dt.timedelta(days=69), days=70)


@pytest.fixture
def settings(make_settings, asana_server):
    def make(entries: bool = False, **details):
        base = make_settings([Scope("workspace", asana_server.dataset.workspace_gid)],
                             page_size=50)
        return dataclasses.replace(base, details=DetailsSettings(
            entries=entries, max_requests=0, categories=True, timesheets=True, rates=True,
            workspace=asana_server.dataset.workspace_gid, **details))
    return make


def rows(engine, table: sa.Table, *columns: str) -> set[tuple]:
    with engine.connect() as conn:
        return {tuple(_plain(v) for v in row) for row in conn.execute(
            sa.select(*(table.c[c] for c in columns)))}


def _plain(value):
    return float(value) if isinstance(value, Decimal) else value


def test_categories_approvals_and_rates_are_stored_exactly(asana_server, settings, engine, sleep):
    data = asana_server.dataset
    asana_server.approval_case = "lower"  # as the endpoint first sent them
    result = run_sync(settings(), sleep=sleep)
    assert result.status == "succeeded"
    assert rows(engine, schema.time_tracking_categories, "gid", "name", "color", "is_archived",
                "deleted_at") == {(c.gid, c.name, c.color, c.is_archived, None)
                                  for c in data.categories.values()}
    assert any(c.is_archived for c in data.categories.values())
    assert rows(engine, schema.time_tracking_entry_categories, "entry_gid", "category_gid") == {
        (e.gid, c) for e in data.entries.values() for c in e.categories}
    assert rows(engine, schema.timesheet_approval_statuses, "gid", "user_gid", "start_date",
                "end_date", "approval_status") == {
        (t.gid, t.user_gid, t.start_date, t.end_date, t.approval_status.upper())
        for t in data.timesheets.values()}
    assert rows(engine, schema.rates, "gid", "parent_gid", "resource_gid", "rate",
                "currency_code") == {
        (r.gid, r.parent_gid, r.resource_gid, r.rate, r.currency_code)
        for r in data.rates.values() if r.parent_gid in {e.attributable_to
                                                         for e in data.entries.values()}}


def test_an_unchanged_rerun_writes_nothing_with_everything_on(asana_server, settings, engine,
                                                              sleep):
    run_sync(settings(entries=True), sleep=sleep)
    before = table_snapshot(engine)
    again = run_sync(settings(entries=True), sleep=sleep)
    assert again.status == "succeeded" and again.counts.updated == 0
    assert table_snapshot(engine) == before


def test_links_follow_their_entry_and_a_category_gone_from_asana_stays_marked(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    carrier = next(e for e in data.entries.values() if len(e.categories) == 2)
    kept, dropped = carrier.categories
    data.edit_entry(carrier.gid, categories=[kept])
    gone = next(g for g, c in data.categories.items() if not c.is_archived and g not in
                (kept, dropped))
    data.delete_category(gone)  # taken off its entries too
    run_sync(settings(), sleep=sleep)
    links = rows(engine, schema.time_tracking_entry_categories, "entry_gid", "category_gid")
    assert links == {(e.gid, c) for e in data.entries.values() for c in e.categories}
    assert (carrier.gid, dropped) not in links
    with engine.connect() as conn:
        marked = conn.execute(sa.select(schema.time_tracking_categories.c.gid)
                              .where(schema.time_tracking_categories.c.deleted_at.is_not(None))
                              ).scalars().all()
    assert marked == [gone]


def test_weeks_that_can_still_change_are_read_again_and_a_recall_is_seen(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    approved = max((t for t in data.timesheets.values() if t.approval_status == "APPROVED"),
                   key=lambda t: t.start_date)
    assert approved.start_date >= TODAY - dt.timedelta(days=35)
    # what can still change: each user's recent weeks, and each older week not approved;
    # ten weeks fit a page, so one listing from a user's oldest open week is the cheapest
    recent = TODAY - dt.timedelta(days=35)
    oldest_open = {user: min((t.start_date for t in data.timesheets.values()
                              if t.user_gid == user and t.start_date < recent
                              and t.approval_status != "APPROVED"), default=recent)
                   for user in data.users}
    assert any(day < recent for day in oldest_open.values())
    wanted = {(user, day.isoformat(), None) for user, day in oldest_open.items()}
    data.set_approval_status(approved.user_gid, approved.start_date, "SUBMITTED")  # recalled
    asked = len(asana_server.requests)
    run_sync(settings(), sleep=sleep)
    read = {(r.params["user"], r.params["from_date"], r.params.get("to_date"))
            for r in asana_server.requests[asked:]
            if r.path.endswith("/timesheet_approval_statuses")}
    assert read == wanted
    with engine.connect() as conn:
        status = conn.scalar(sa.select(schema.timesheet_approval_statuses.c.approval_status)
                             .where(schema.timesheet_approval_statuses.c.gid == approved.gid))
        week = conn.execute(sa.text(
            "SELECT COUNT(*), MIN(approval_status), MAX(approval_status) FROM "
            "v_time_tracking_entries WHERE created_by_gid = :user AND entered_week = :monday"),
            {"user": approved.user_gid, "monday": approved.start_date}).one()
    assert status == "SUBMITTED"
    if week[0]:  # without entry details, an entry's approval is its week's
        assert week[1] == week[2] == "SUBMITTED"


def test_cost_is_hours_times_the_rate_of_project_and_person(asana_server, settings, engine,
                                                            sleep):
    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    rate_of = {(r.parent_gid, r.resource_gid): r for r in data.rates.values()}
    with engine.connect() as conn:
        viewed = conn.execute(sa.text(
            "SELECT gid, cost, currency_code FROM v_time_tracking_entries")).all()
    assert len(viewed) == len(data.entries)
    costed = 0
    for gid, cost, currency in viewed:
        entry = data.entries[gid]
        rate = rate_of.get((entry.attributable_to, entry.user_gid))
        if rate is None:
            assert cost is None and currency is None
        else:
            costed += 1
            assert math.isclose(float(cost), entry.duration_minutes / 60 * rate.rate,
                                rel_tol=1e-9)
            assert currency == rate.currency_code
    assert 0 < costed < len(viewed)


def test_without_the_addon_each_refusal_is_said_once_and_the_run_succeeds(
    asana_server, settings, engine, sleep, caplog
):
    asana_server.addon = False
    caplog.set_level(logging.WARNING, logger="etl")
    result = run_sync(settings(entries=True), sleep=sleep)
    assert result.status == "succeeded" and result.exit_code == 0
    said = [r.getMessage() for r in caplog.records if "Timesheets & Budgets" in r.getMessage()]
    assert len(said) == 4  # details' fields, categories, timesheets, rates: once each
    for what in ("time tracking categories", "weekly timesheet approvals", "hourly rates"):
        assert sum(m.startswith(what) for m in said) == 1
    for table in (schema.time_tracking_categories, schema.time_tracking_entry_categories,
                  schema.timesheet_approval_statuses, schema.rates):
        assert rows(engine, table, table.c.keys()[0]) == set()
    with engine.connect() as conn:
        tasks = conn.scalar(sa.select(sa.func.count(schema.time_tracking_entries.c.task_gid)))
    assert tasks == len(asana_server.dataset.entries)  # the task columns filled all the same


def readme_queries() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Billable hours, approvals and cost", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def normalise(value):
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def same(mine: list[tuple], theirs: list[tuple]) -> bool:
    """Rounded figures may differ by a cent where float and decimal arithmetic round a
    half cent differently; everything else is equal."""
    if len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs):
        for x, y in zip(a, b):
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > 0.011:
                    return False
            elif x != y:
                return False
    return True


@pytest.fixture(scope="module")
def answers() -> dict[str, list]:
    return {}


def test_readme_finance_queries_answer_the_same_on_every_backend(
    asana_server, settings, engine, backend, sleep, answers
):
    queries = readme_queries()
    assert len(queries) == 3
    run_sync(settings(entries=True), sleep=sleep)
    found = []
    with engine.connect() as conn:
        for query in queries:
            result = [tuple(normalise(v) for v in row) for row in conn.exec_driver_sql(query)]
            assert result
            found.append(result)
    # every figure is there somewhere: billable, non-billable, approved hours and cost
    assert all(any(row[i] for row in found[0]) for i in range(2, 6))
    assert any(row[4] for row in found[1]) and any(row[4] for row in found[2])
    answers[backend] = found
    for other, theirs in answers.items():
        assert all(same(a, b) for a, b in zip(found, theirs)), f"{backend} and {other} disagree"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_403_on_one_project_fails_its_rates_alone(asana_server, settings, engine, sleep,
                                                     caplog):
    data = asana_server.dataset
    projects = sorted({e.attributable_to for e in data.entries.values() if e.attributable_to})
    asana_server.forbidden.add(projects[0])  # the token may not see this one's rates
    caplog.set_level(logging.WARNING, logger="etl")
    result = run_sync(settings(), sleep=sleep)
    assert result.status == "succeeded"
    stored = {parent for (parent,) in rows(engine, schema.rates, "parent_gid")}
    assert stored == {r.parent_gid for r in data.rates.values() if r.parent_gid in projects[1:]}
    assert not [r for r in caplog.records if "Timesheets & Budgets" in r.getMessage()]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_links_follow_an_entry_that_a_deletion_check_finds_moved(asana_server, make_settings,
                                                                 engine, sleep):
    data = asana_server.dataset
    first, second = sorted({e.attributable_to for e in data.entries.values()
                            if e.attributable_to})[:2]
    moved = next(e for e in data.entries.values() if e.attributable_to == first
                 and e.categories)
    other = next(c for c, cat in data.categories.items() if c not in moved.categories
                 and not cat.is_archived)

    def sync(*projects):
        base = make_settings([Scope("project", p) for p in projects], page_size=50)
        return run_sync(dataclasses.replace(base, details=DetailsSettings(
            categories=True, workspace=data.workspace_gid)), sleep=sleep)

    sync(first)
    data.edit_entry(moved.gid, attributable_to=second, categories=[other])
    sync(first)  # its listing lacks it: the confirmation finds it moved, and writes it
    links = rows(engine, schema.time_tracking_entry_categories, "entry_gid", "category_gid")
    assert {c for e, c in links if e == moved.gid} == {other}
    assert sync(first, second).counts.updated == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dry_run_after_a_sync_with_categories_sees_nothing_to_change(
    asana_server, settings, engine, sleep
):
    from etl.run.dryrun import run_dry_run

    run_sync(settings(entries=True), sleep=sleep)
    dry = run_dry_run(settings(entries=True), sleep=sleep)
    assert (dry.insert, dry.update, dry.delete) == (0, 0, 0)
    assert dry.unchanged == len(asana_server.dataset.entries)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_entry_s_approval_follows_its_week_approved_late(asana_server, settings, engine,
                                                             sleep):
    data = asana_server.dataset
    run_sync(settings(entries=True, refresh_days=7), sleep=sleep)
    late = next(t for t in sorted(data.timesheets.values(), key=lambda t: t.start_date)
                if t.approval_status == "SUBMITTED" and t.start_date < TODAY - dt.timedelta(14)
                and any(e.user_gid == t.user_gid and e.entered_on >= t.start_date
                        and e.entered_on <= t.end_date for e in data.entries.values()))
    data.set_approval_status(late.user_gid, late.start_date, "APPROVED")
    for _ in range(2):  # the first reads the week, the second the entries it now disagrees with
        run_sync(settings(entries=True, refresh_days=7), sleep=sleep)
    with engine.connect() as conn:
        statuses = set(conn.execute(sa.text(
            "SELECT approval_status FROM v_time_tracking_entries WHERE created_by_gid = :user "
            "AND entered_week = :monday"), {"user": late.user_gid, "monday": late.start_date}
            ).scalars())
    assert statuses == {"APPROVED"}


def test_the_demo_prints_billable_and_approved_hours_beside_the_hours(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from etl.cli import cli

    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger("etl")  # the command line sets up logging: as it was after
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))  # a copy: mutated in place
    for name in ("level", "propagate"):
        monkeypatch.setattr(logger, name, getattr(logger, name))
    shown = CliRunner().invoke(cli, ["demo", "--entries", "300"],
                               env={"ASANA_ETL_LOG_LEVEL": None})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    at = lines.index("hours per project, top five:")
    assert lines[at + 1].split() == ["hours", "billable", "approved", "project"]
    figures = [[float(v) for v in line.split()[:3]] for line in lines[at + 2:at + 7]]
    assert len(figures) == 5 and all(b <= h and a <= h for h, b, a in figures)
    assert any(b for _, b, _ in figures) and any(a for _, _, a in figures)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_turning_categories_on_rewrites_no_entry_and_reads_no_detail_again(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    base = make_settings([Scope("workspace", data.workspace_gid)], page_size=50)

    def sync(**on):
        return run_sync(dataclasses.replace(base, details=DetailsSettings(
            entries=True, max_requests=0, workspace=data.workspace_gid, **on)), sleep=sleep)

    sync()
    quiet = sync()  # what a night reads again without them: the refresh set
    on = sync(categories=True)
    assert on.counts.updated == 0 and on.details_requests == quiet.details_requests
    assert rows(engine, schema.time_tracking_entry_categories, "entry_gid", "category_gid") == {
        (e.gid, c) for e in data.entries.values() for c in e.categories}


def test_the_weeks_to_read_cost_the_fewest_requests():
    from etl.store.dimensions import cheapest_reads

    recent = dt.date(2026, 11, 2)

    def weeks(first: dt.date, count: int, open_: set[int]) -> list:
        days = [first + dt.timedelta(weeks=i) for i in range(count)]
        return [(day, day + dt.timedelta(days=6), i in open_ or day >= recent)
                for i, day in enumerate(days)]

    # nothing older is open: the recent weeks alone
    assert cheapest_reads([], recent, 100) == [(recent, None)]
    # a week left open five years ago: it alone and the recent weeks (2 requests), not
    # 257 weeks (3 pages)
    five_years = weeks(recent - dt.timedelta(weeks=257), 262, {0})
    assert cheapest_reads(five_years, recent, 100) == [
        (five_years[0][0], five_years[0][1]), (recent, None)]
    # a team that never approves: every week open, two years in two pages
    never = weeks(recent - dt.timedelta(weeks=104), 108, set(range(104)))
    assert cheapest_reads(never, recent, 100) == [(never[0][0], None)]
    # one open week long ago, the others recent enough to share a listing: 1 + 1
    mixed = weeks(recent - dt.timedelta(weeks=250), 254, {0, 220, 230, 240})
    assert cheapest_reads(mixed, recent, 100) == [
        (mixed[0][0], mixed[0][1]), (mixed[220][0], None)]
    # on pages of 10 weeks, every choice but a listing from week 0 costs 5: at equal cost
    # the longest listing is taken (it reads the most weeks)
    assert cheapest_reads(mixed, recent, 10) == [
        (mixed[0][0], mixed[0][1]), (mixed[220][0], None)]
    # a user with no entries lately: their open weeks alone, no recent weeks
    assert cheapest_reads(five_years, recent, 100, lately=False) == [
        (five_years[0][0], five_years[0][1])]
    assert cheapest_reads([], recent, 100, lately=False) == []
    assert cheapest_reads(mixed, recent, 100, lately=False) == [
        (mixed[0][0], mixed[0][1]), (mixed[220][0], None)]
    # a week open eight weeks back: one listing from it (1), not it and the recent (2)
    near = weeks(recent - dt.timedelta(weeks=10), 14, {2})
    assert cheapest_reads(near, recent, 100) == [(near[2][0], None)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_records_around_the_entries_that_cannot_be_rows_are_set_aside(asana_server, settings,
                                                                      engine, sleep, caplog):
    """A category whose gid is no gid, a week whose status no column can hold: each is
    set aside (logged with its reason); the run succeeds, the rest is stored."""
    from etl.simulator.models import Category

    data = asana_server.dataset
    data.categories["odd"] = Category(gid=["13"], name="a list for a gid")  # type: ignore[arg-type]
    week = next(iter(data.timesheets.values()))
    week.approval_status = "ß" * 9  # 18 characters upper-cased, for a column of 16
    caplog.set_level(logging.WARNING, logger="etl")
    result = run_sync(settings(), sleep=sleep)
    assert result.status == "succeeded"
    set_aside = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(set_aside) == 2 and "gid is not a gid" in set_aside[0] + set_aside[1]
    assert "approval_status is not a status" in set_aside[0] + set_aside[1]
    weeks = {gid for (gid,) in rows(engine, schema.timesheet_approval_statuses, "gid")}
    assert week.gid not in weeks and len(weeks) == len(data.timesheets) - 1
    stored = {gid for (gid,) in rows(engine, schema.time_tracking_categories, "gid")}
    assert stored == {c.gid for key, c in data.categories.items() if key != "odd"}


def test_a_rate_is_kept_as_its_column_keeps_it():
    from etl.dimensions import to_rate

    row = to_rate({"gid": "1", "parent": {"gid": "2"}, "resource": {"gid": "3"},
                   "rate": 33.3333333, "currency_code": "EUR"})
    assert row["rate"] == 33.333333


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_entry_read_without_an_approval_is_not_read_again_for_its_week(
    asana_server, settings, engine, sleep
):
    """The refresh set's week clause (a week approved late, or recalled) leaves out an
    entry whose details came without an approval (a 403, say): it would be read again
    every run, at any age, for nothing."""
    from etl.store.details import refresh_set

    data = asana_server.dataset
    run_sync(settings(entries=True), sleep=sleep)
    later = TODAY + dt.timedelta(days=1)  # no entry is recent: the week clause alone
    scopes = [Scope("workspace", data.workspace_gid)]
    entries = schema.time_tracking_entries
    with engine.begin() as conn:
        assert refresh_set(conn, scopes, later, 1000) == []
        approved = next(gid for (gid,) in conn.execute(sa.select(entries.c.gid).where(
            entries.c.approval_status == "APPROVED")))
        conn.execute(sa.update(entries).where(entries.c.gid == approved)
                     .values(approval_status="DRAFT"))
        assert refresh_set(conn, scopes, later, 1000) == [approved]  # approved late
        conn.execute(sa.update(entries).where(entries.c.gid == approved)
                     .values(approval_status=None))
        assert refresh_set(conn, scopes, later, 1000) == []
