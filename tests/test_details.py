"""Entries' details (`[details] entries`), over HTTP against the simulated Asana, on every
backend: what the single GET returns, stored exactly; a budget that leaves a backlog the
next runs drain; the refresh set read again and nothing else; each answer the list can
give to the details' fields; a workspace without the Timesheets & Budgets add-on."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.cli import cli
from etl.config import DetailsSettings, Scope
from etl.run.pipeline import run_backfill, run_sync
from etl.simulator import Dataset
from etl.store import schema
from tests.helpers import TOKEN, expected_rows, stored_rows, table_snapshot
from tests.test_terminal import TITLE, Emulator, run_on_terminal, terminal_env

TODAY = dt.datetime.now(dt.UTC).date()
#: Read again before each test (tests/conftest.py `_within_one_day`).
TODAY_FROM_CLOCK = True
#: The entries' single GET, as the simulator records its path.
ONE_ENTRY = re.compile(r"/api/1\.0/time_tracking_entries/\d+$")


@pytest.fixture
def dataset() -> Dataset:
    """Ten weeks up to today: the recent weeks' timesheets not approved yet, the older
    ones mostly approved; the refresh set (35 days) is about half the entries."""
    return Dataset.generate(seed=8, entries=300, users=6, projects=4, portfolios=1, tasks=20,
                            start=TODAY - dt.timedelta(days=69), days=70)


@pytest.fixture
def settings(make_settings, asana_server):
    """The workspace, 50 entries a page, details on (no cap unless a test sets one)."""
    def make(**details):
        base = make_settings([Scope("workspace", asana_server.dataset.workspace_gid)],
                             page_size=50)
        return dataclasses.replace(base, details=DetailsSettings(
            **{"entries": True, "max_requests": 0, **details}))
    return make


def expected_details(data: Dataset, addon: bool = True) -> dict[str, tuple]:
    """Each entry's details as the simulated Asana holds them (not through etl)."""
    return {
        e.gid: (e.task_gid, data.tasks[e.task_gid][0],
                e.billable_status if addon else None, data.approval_status(e),
                e.description if addon else None,
                e.created_at.replace(microsecond=e.created_at.microsecond // 1000 * 1000))
        for e in data.entries.values()
    }


def stored_details(engine) -> dict[str, tuple]:
    t = schema.time_tracking_entries
    columns = [t.c.task_gid, t.c.task_name, t.c.billable_status, t.c.approval_status,
               t.c.description, t.c.created_at]
    with engine.connect() as conn:
        return {row.gid: tuple(row[1:]) for row in conn.execute(
            sa.select(t.c.gid, *columns).where(t.c.deleted_at.is_(None),
                                               t.c.details_fetched_at.is_not(None)))}


def single_gets(server) -> int:
    """The entries' details' single GETs (not deletion confirmations')."""
    return sum(1 for r in server.requests if ONE_ENTRY.search(r.path)
               and "billable_status" in r.params.get("opt_fields", ""))


def refresh_set(data: Dataset, days: int = 35) -> set[str]:
    since = TODAY - dt.timedelta(days=days - 1)
    return {e.gid for e in data.entries.values()
            if e.entered_on >= since and data.approval_status(e) != "APPROVED"}


def test_one_sync_stores_every_entry_s_details_as_the_single_get_returns_them(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    result = run_sync(settings(), sleep=sleep)
    assert result.status == "succeeded"
    assert stored_rows(engine) == expected_rows(data)
    assert stored_details(engine) == expected_details(data)
    assert single_gets(asana_server) <= 1.02 * len(data.entries)
    assert (result.details_requests, result.details_backlog) == (single_gets(asana_server), 0)
    assert result.details_changed == len(data.entries)
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.sync_runs)).one()
    assert (row.details_list, row.details_requests, row.details_backlog) == (
        "ignored", result.details_requests, 0)


def test_an_unchanged_rerun_reads_only_the_refresh_set_and_writes_no_entry_row(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    before, asked = table_snapshot(engine), len(asana_server.requests)
    again = run_sync(settings(), sleep=sleep)
    refreshed = {ONE_ENTRY.search(r.path) and r.path.rsplit("/", 1)[1]
                 for r in asana_server.requests[asked:] if ONE_ENTRY.search(r.path)}
    assert 0 < len(refreshed) < len(data.entries)
    assert refreshed == refresh_set(data)
    assert again.details_requests == len(refreshed) and again.details_changed == 0
    assert table_snapshot(engine) == before  # nothing but the run's own bookkeeping


def test_edits_inside_the_refresh_set_are_caught_and_a_backfill_catches_the_rest(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    recent = sorted(refresh_set(data))[0]
    old = min(data.entries.values(), key=lambda e: e.entered_on)
    assert data.approval_status(old) == "APPROVED" or old.entered_on < TODAY - dt.timedelta(35)
    for gid, billable in ((recent, "nonBillable"), (old.gid, "billable")):
        flipped = "billable" if data.entries[gid].billable_status != "billable" else billable
        data.edit_entry(gid, billable_status=flipped, description=f"edited {gid} — ünï")
    night = run_sync(settings(), sleep=sleep)
    stored, wanted = stored_details(engine), expected_details(data)
    assert stored[recent] == wanted[recent]
    assert stored[old.gid] != wanted[old.gid]  # what a night cannot see (README)
    assert night.details_changed == 1
    back = run_backfill(settings(), window=dataclasses.replace(
        night.scopes[0].window, since=old.entered_on, until=old.entered_on),
        reread_details=True, sleep=sleep)
    assert back.status == "succeeded" and back.details_changed == 1
    assert stored_details(engine) == expected_details(data)


def test_a_budget_leaves_an_exact_backlog_and_runs_drain_it_newest_first(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    cap, runs_needed = 120, -(-len(data.entries) // 120)
    first = run_sync(settings(max_requests=cap), sleep=sleep)
    newest = sorted(data.entries.values(), key=lambda e: (e.entered_on, e.gid))[-cap:]
    assert set(stored_details(engine)) == {e.gid for e in newest}
    backlogs = [first.details_backlog]
    for _ in range(runs_needed):
        asked = single_gets(asana_server)
        result = run_sync(settings(max_requests=cap), sleep=sleep)
        assert single_gets(asana_server) - asked == result.details_requests <= cap
        backlogs.append(result.details_backlog)
        assert result.details_backlog == len(data.entries) - len(stored_details(engine))
    assert backlogs[0] == len(data.entries) - cap
    assert backlogs[-1] == 0 and backlogs == sorted(backlogs, reverse=True)
    assert stored_details(engine) == expected_details(data)


@pytest.mark.parametrize("answer", ["return", "refuse", "ignore", "partial"])
def test_each_answer_of_the_list_loses_nothing(answer, asana_server, settings, engine, sleep):
    asana_server.list_extra_fields = answer
    data = asana_server.dataset
    result = run_sync(settings(), sleep=sleep)
    assert result.status == "succeeded"
    assert stored_details(engine) == expected_details(data)
    assert stored_rows(engine) == expected_rows(data)
    gets = single_gets(asana_server)  # (the preflight reads one entry alone to tell partial)
    assert gets == (0 if answer == "return" else result.details_requests + (answer == "partial"))
    with engine.connect() as conn:
        recorded = conn.scalar(sa.select(schema.sync_runs.c.details_list))
    # a list that leaves out what the single GET gives cannot stand for it
    assert recorded == {"return": "returned", "refuse": "refused", "ignore": "ignored",
                        "partial": "ignored"}[answer]
    if answer == "return":  # the pages carry the details: an edit shows at the next read
        gid = sorted(data.entries)[0]
        data.edit_entry(gid, description="seen from the list")
        run_sync(settings(), sleep=sleep)
        assert stored_details(engine)[gid][4] == "seen from the list"
        assert single_gets(asana_server) == 0


def test_without_the_addon_the_run_succeeds_says_so_once_and_stores_nulls(
    asana_server, settings, engine, sleep, caplog
):
    asana_server.addon = False
    data = asana_server.dataset
    caplog.set_level(logging.INFO, logger="etl")
    result = run_sync(settings(), sleep=sleep)
    assert result.status == "succeeded" and result.exit_code == 0
    assert all(s.status == "succeeded" for s in result.scopes)
    assert stored_details(engine) == expected_details(data, addon=False)
    said = [r.getMessage() for r in caplog.records if "Timesheets & Budgets" in r.getMessage()]
    assert said == ["entry details: this workspace gives no billable_status or description: "
                    "they come with Asana's Timesheets & Budgets add-on; stored as null"]


def write_config(tmp_path, server, database_url: str, **details) -> str:
    lines = [f'[asana]\nbase_url = "{server.base_url}"\npage_size = 50\nconcurrency = 4\n'
             "requests_per_minute = 1000000\nmax_retries = 1\nbackoff_max_seconds = 0.01\n",
             f'[database]\nurl = "{database_url}"\n', "[details]\nentries = true\n",
             *(f"{key} = {value}\n" for key, value in details.items()),
             f'[scopes]\nworkspace = "{server.dataset.workspace_gid}"\n']
    path = tmp_path / "config.toml"
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_runs_killed_mid_details_lose_nothing_and_the_next_goes_on(
    asana_server, tmp_path, database_url, engine
):
    asana_server.latency = 0.01
    data = asana_server.dataset
    config = write_config(tmp_path, asana_server, database_url)
    env = {**os.environ, "ASANA_ACCESS_TOKEN": TOKEN}
    kept = []
    for kill_after in (40, 120, 200):
        before = single_gets(asana_server)
        victim = subprocess.Popen([sys.executable, "-m", "etl", "--config", config, "sync"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while single_gets(asana_server) - before < kill_after and victim.poll() is None:
            assert time.monotonic() < deadline, "the run never reached its details"
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        kept.append(len(stored_details(engine)))
    assert kept == sorted(kept) and kept[-1] > 0  # what committed stays
    rerun = subprocess.run([sys.executable, "-m", "etl", "--config", config, "sync"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_details(engine) == expected_details(data)
    assert stored_rows(engine) == expected_rows(data)
    assert "running" not in {status for (status,) in _statuses(engine)}


def _statuses(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.sync_runs.c.status)).all()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_check_status_and_the_progress_say_what_details_cost(asana_server, tmp_path,
                                                             database_url, engine):
    asana_server.addon = False
    config = write_config(tmp_path, asana_server, database_url, max_requests=100)
    env = {"ASANA_ACCESS_TOKEN": TOKEN}
    runner = CliRunner()
    checked = runner.invoke(cli, ["--config", config, "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "ok    details: the list ignored their fields: one request an entry" in checked.output
    assert ("this workspace gives no billable_status or description: they come with Asana's "
            "Timesheets & Budgets add-on") in checked.output
    assert "first read: unknown until the first sync has loaded the entries" in checked.output

    seen = Emulator(140, 20)
    argv = [sys.executable, "-m", "etl", "--config", config, "sync"]
    assert run_on_terminal(argv, terminal_env(ASANA_ACCESS_TOKEN=TOKEN), tmp_path, seen) == 0
    (title,) = [line for line in seen.lines() if TITLE.match(line)]
    assert re.match(r"sync: 1/1 scopes, 300 entries, [\d,]+/s, 100 details, 0 retries, ", title)

    left = len(asana_server.dataset.entries) - 100
    status = runner.invoke(cli, ["--config", config, "status"], env=env)
    assert f"Entry details: {left} entries still to read (about 0 min" in status.output
    checked = runner.invoke(cli, ["--config", config, "check"], env=env)
    assert (f"first read: {left} entries × 1 request ≈ 0.0 min at 1,000,000 requests a "
            f"minute, over 2 runs at [details] max_requests = 100") in checked.output


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_detail_no_column_holds_is_set_aside_and_the_run_goes_on(asana_server, settings,
                                                                   engine, sleep):
    data = asana_server.dataset
    entry = max(data.entries.values(), key=lambda e: e.entered_on)
    sheet = data.set_approval_status(entry.user_gid, entry.entered_on, "SUBMITTED")
    sheet.approval_status = "SUBMITTED_FOR_REVIEW"  # longer than any status Asana sends
    data.serialised.clear()
    for _ in range(2):  # and the next night is not blocked either
        result = run_sync(settings(), sleep=sleep)
        assert result.status == "succeeded" and result.details_backlog == 0
    stored, wanted = stored_details(engine), expected_details(data)
    aside = {g for g, e in data.entries.items() if data.approval_status(e) == sheet.approval_status}
    assert entry.gid in aside
    assert all(stored[g] == (None,) * 6 for g in aside)  # marked read as far as it could be
    assert {g: v for g, v in stored.items() if g not in aside} == {
        g: v for g, v in wanted.items() if g not in aside}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_changing_answer_of_the_list_rewrites_no_entry_and_reads_nothing_twice(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    asana_server.list_extra_fields = "return"
    run_sync(settings(), sleep=sleep)
    for answer in ("ignore", "return", "refuse", "return"):
        asana_server.list_extra_fields = answer
        asked = single_gets(asana_server)
        result = run_sync(settings(), sleep=sleep)
        assert result.counts.updated == 0, answer
        reads = [r.path for r in asana_server.requests if ONE_ENTRY.search(r.path)]
        assert len(reads) - asked == (0 if answer == "return" else len(refresh_set(data)))
    assert stored_details(engine) == expected_details(data)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_where_the_list_returns_details_a_recent_night_reads_the_older_refresh_set_alone(
    asana_server, settings, engine, sleep
):
    data = asana_server.dataset
    asana_server.list_extra_fields = "return"
    run_sync(settings(), sleep=sleep)
    older = sorted(g for g in refresh_set(data)
                   if data.entries[g].entered_on < TODAY - dt.timedelta(days=3))[0]
    data.edit_entry(older, description="seen though the night listed 3 days")
    asked = single_gets(asana_server)
    night = run_sync(settings(), recent_days=3, sleep=sleep)
    assert night.status == "succeeded"
    assert stored_details(engine)[older][4] == "seen though the night listed 3 days"
    recent = TODAY - dt.timedelta(days=2)
    assert single_gets(asana_server) - asked == len(
        {g for g in refresh_set(data) if data.entries[g].entered_on < recent})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_backfill_rereads_each_entry_of_its_window_once(asana_server, settings, engine,
                                                          sleep, monkeypatch):
    from etl.config import DateWindow
    from etl.run import details

    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    monkeypatch.setattr(details, "BATCH", 20)  # several batches
    since, until = TODAY - dt.timedelta(days=20), TODAY
    inside = {e.gid for e in data.entries.values() if since <= e.entered_on <= until}
    asked = len(asana_server.requests)
    back = run_backfill(settings(), window=DateWindow(since, until), reread_details=True,
                        sleep=sleep)
    read = [r.path.rsplit("/", 1)[1] for r in asana_server.requests[asked:]
            if ONE_ENTRY.search(r.path) and "billable_status" in r.params["opt_fields"]]
    assert back.status == "succeeded" and len(inside) > 40
    assert sorted(read) == sorted(set(read)) and set(read) >= inside


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_queue_reads_past_refresh_pages_the_window_already_took(asana_server, settings,
                                                                    engine, sleep):
    """`backfill --details`: a page of the refresh set made only of entries just read as
    the window's leaves nothing to read; the queue must go on to the next page, not end."""
    from etl.config import DateWindow
    from etl.run.details import _Queue

    data = asana_server.dataset
    run_sync(settings(), sleep=sleep)
    wanted = refresh_set(data)
    since = TODAY - dt.timedelta(days=34)
    # the window: the refresh set's oldest days, whose entries come first in gid order
    # (the older half of it: which weeks are approved, and out of it, moves with the date)
    days = sorted(e.entered_on for e in data.entries.values() if e.gid in wanted)
    window = DateWindow(days[0], days[len(days) // 2])
    inside = {e.gid for e in data.entries.values()
              if window.since <= e.entered_on <= window.until}
    assert len(inside & wanted) > 6 and wanted - inside
    queue = _Queue(engine, [Scope("workspace", data.workspace_gid)], window, None, since,
                   dt.datetime.now(dt.UTC))
    read: list[str] = []
    while gids := queue.next(3):
        read += gids
    assert len(read) == len(set(read)) and set(read) == inside | wanted


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_entry_asana_keeps_failing_on_is_passed_over_and_one_failing_all_stops_details(
    asana_server, settings, engine, sleep, caplog
):
    from etl.run.detail_reads import FAILURES_IN_A_ROW

    data = asana_server.dataset
    broken = sorted(data.entries)[len(data.entries) // 2]
    asana_server.add_fault(500, times=10_000, when=lambda path, params: path.endswith(broken))
    caplog.set_level(logging.WARNING, logger="etl")
    first = run_sync(settings(), sleep=sleep)
    # that entry alone waits for the next run; its neighbours' details are all read
    assert first.status == "succeeded" and first.details_backlog == 1
    assert sum(f"details of entry {broken} not read this run" in r.getMessage()
               for r in caplog.records) == 1
    with engine.connect() as conn:
        unread = set(conn.execute(sa.select(schema.time_tracking_entries.c.gid).where(
            schema.time_tracking_entries.c.details_fetched_at.is_(None))).scalars())
    assert unread == {broken}

    # Asana failing every entry: the details stop after a few, the listings do not
    data.edit_entry(broken, duration_minutes=data.entries[broken].duration_minutes + 1)
    asana_server.add_fault(500, times=10_000, when=lambda path, params: ONE_ENTRY.search(path)
                           is not None and "billable_status" in params.get("opt_fields", ""))
    asked = len(asana_server.requests)
    second = run_sync(settings(), sleep=sleep)
    tried = {r.path for r in asana_server.requests[asked:] if ONE_ENTRY.search(r.path)}
    # (those already in flight end too: at most a worker each beyond the few in a row)
    in_flight = settings().asana.concurrency
    assert second.status == "succeeded" and 0 < len(tried) <= in_flight + FAILURES_IN_A_ROW
    assert len(tried) < len(data.entries) // 4
    assert stored_rows(engine) == expected_rows(data)
