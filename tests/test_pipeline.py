"""End to end: the simulated Asana over HTTP → run_sync → the tables."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
import sqlalchemy as sa

from etl.store import engines, runs, schema
from etl.config import Scope
from etl.errors import AuthError, ExitCode
from etl.config import DateWindow
from etl.run.pipeline import run_backfill, run_sync
from etl.store.links import entries_by_day
from etl.simulator import AsanaSimulator, Dataset
from etl.config import AsanaSettings, Secret, Settings
from tests.helpers import all_scopes, expected_rows, stored_rows, table_snapshot, tuple_counters


def test_first_sync_loads_every_entry_field_for_field(asana_server, make_settings, engine, sleep):
    result = run_sync(make_settings(page_size=25), sleep=sleep)

    assert result.status == "succeeded" and result.exit_code == ExitCode.OK
    assert stored_rows(engine) == expected_rows(asana_server.dataset)
    # overlapping scopes: every entry once, the other sightings counted unchanged
    assert result.counts.inserted == len(asana_server.dataset.entries)
    assert result.counts.updated == 0
    assert result.counts.entries == result.counts.inserted + result.counts.unchanged
    assert result.rate_limited == 0 and all(s.retries == 0 for s in result.scopes)


def test_pagination_follows_every_page_with_the_page_size(asana_server, make_settings, engine, sleep):
    workspace = Scope("workspace", asana_server.dataset.workspace_gid)
    result = run_sync(make_settings([workspace], page_size=7), sleep=sleep)

    total = len(asana_server.dataset.entries)
    pages = -(-total // 7)
    assert result.scopes[0].pages == pages
    listing = [r for r in asana_server.requests if r.path.endswith("/time_tracking_entries")]
    preflight, listing = listing[0], listing[1:]
    assert preflight.params["limit"] == "1"  # token and plan checked before any write
    assert len(listing) == pages
    assert all(r.params["limit"] == "7" for r in listing)
    assert "offset" not in listing[0].params and all("offset" in r.params for r in listing[1:])
    assert len(stored_rows(engine)) == total


def test_requests_name_their_fields_explicitly(asana_server, make_settings, sleep):
    run_sync(make_settings(), sleep=sleep)
    for record in asana_server.requests[1:]:  # after the one-entry preflight
        assert record.params["opt_fields"] == (
            "attributable_to,attributable_to.name,created_by,created_by.name,"
            "duration_minutes,entered_on"
        )


def test_one_entry_seen_through_user_project_and_portfolio_is_one_row(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    portfolio, (_, held) = next(iter(data.portfolios.items()))
    entry = next(e for e in data.entries.values() if e.attributable_to in held)
    scopes = [
        Scope("user", entry.user_gid),
        Scope("project", entry.attributable_to),
        Scope("portfolio", portfolio),
    ]
    run_sync(make_settings(scopes), sleep=sleep)

    with engine.connect() as conn:
        count = conn.scalar(
            sa.select(sa.func.count()).where(schema.time_tracking_entries.c.gid == entry.gid)
        )
        links = conn.execute(
            sa.select(schema.time_tracking_entry_scopes.c.scope_type)
            .where(schema.time_tracking_entry_scopes.c.entry_gid == entry.gid)
        ).scalars()
        assert count == 1
        assert sorted(links) == ["portfolio", "project", "user"]


def test_null_attributable_to_unicode_and_long_names_survive(asana_server, make_settings, engine, sleep):
    run_sync(make_settings(), sleep=sleep)
    rows = stored_rows(engine)
    assert any(r["attributable_to_gid"] is None and r["attributable_to_name"] is None for r in rows.values())
    names = {r["created_by_name"] for r in rows.values()} | {r["attributable_to_name"] for r in rows.values()}
    assert 'Zoë "Zed" Ångström' in names
    assert "Renée 🚀 Dupont" in names
    assert any(n and len(n) >= 300 for n in names)
    assert rows == expected_rows(asana_server.dataset)


def test_second_sync_without_change_writes_nothing_but_bookkeeping(
    asana_server, make_settings, engine, sleep
):
    settings = make_settings()
    run_sync(settings, sleep=sleep)
    before = table_snapshot(engine)

    again = run_sync(settings, sleep=sleep)

    assert again.status == "succeeded"
    assert again.counts.inserted == again.counts.updated == 0
    assert again.counts.unchanged == again.counts.entries > 0
    assert table_snapshot(engine) == before


def test_edits_on_the_server_show_after_the_next_sync(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    settings = make_settings()
    run_sync(settings, sleep=sleep)
    first = next(iter(data.entries.values()))
    data.edit_entry(first.gid, duration_minutes=first.duration_minutes + 5)
    renamed_user = first.user_gid
    data.rename_user(renamed_user, "Renamed Ünïcode User")
    moved = next(e for e in data.entries.values() if e.attributable_to is not None and e.gid != first.gid)
    other_project = next(p for p in data.projects if p != moved.attributable_to)
    data.edit_entry(moved.gid, attributable_to=other_project)

    before = {r["gid"]: r for r in stored_rows(engine).values()}
    result = run_sync(settings, sleep=sleep)

    rows = stored_rows(engine)
    assert rows == expected_rows(data)
    assert rows[first.gid]["duration_minutes"] == first.duration_minutes
    assert rows[moved.gid]["attributable_to_gid"] == other_project
    changed = {g for g in rows if rows[g] != before[g]}
    assert result.counts.updated == len(changed)
    assert result.counts.inserted == 0


def test_updated_at_moves_only_for_changed_rows(asana_server, make_settings, engine, sleep):
    settings = make_settings()
    run_sync(settings, sleep=sleep)
    t = schema.time_tracking_entries
    with engine.connect() as conn:
        stamps = dict(conn.execute(sa.select(t.c.gid, t.c.updated_at)).all())
    gid = next(iter(asana_server.dataset.entries))
    asana_server.dataset.edit_entry(gid, duration_minutes=999)
    run_sync(settings, sleep=sleep)
    with engine.connect() as conn:
        after = dict(conn.execute(sa.select(t.c.gid, t.c.updated_at)).all())
        first_seen = conn.scalar(sa.select(t.c.first_seen_at).where(t.c.gid == gid))
    assert [g for g in stamps if stamps[g] != after[g]] == [gid]
    assert after[gid] > stamps[gid]
    assert first_seen == stamps[gid]


def test_rate_limit_and_server_error_are_retried(asana_server, make_settings, engine, sleep):
    listing = lambda path, params: params.get("limit") == "50"  # not the preflight  # noqa: E731
    asana_server.add_fault(429, retry_after=7, times=2, when=listing)
    asana_server.add_fault(500, when=lambda path, params: "offset" in params)
    result = run_sync(make_settings(page_size=50), sleep=sleep)

    assert result.status == "succeeded"
    assert asana_server.count(429) == 2 and asana_server.count(500) == 1
    assert result.rate_limited == 2
    assert stored_rows(engine) == expected_rows(asana_server.dataset)
    with engine.connect() as conn:
        retries, waited = conn.execute(sa.select(sa.func.sum(schema.sync_run_scopes.c.retries),
                                                 sa.func.sum(schema.sync_run_scopes.c.retry_after_seconds))).one()
    assert retries == 3
    assert 14 <= waited < 15  # Retry-After honoured, twice (the waits happen in the fetcher)


def test_a_scope_answered_404_fails_alone(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    good = Scope("workspace", data.workspace_gid)
    missing = Scope("project", "999999999")
    result = run_sync(make_settings([missing, good]), sleep=sleep)

    assert result.status == "partial" and result.exit_code == ExitCode.SCOPE_FAILED
    assert "Unknown object" in result.failed_scopes[0].error  # Asana's own message
    assert stored_rows(engine) == expected_rows(data)
    with engine.connect() as conn:
        scopes = conn.execute(sa.select(schema.sync_run_scopes)).all()
        run = conn.execute(sa.select(schema.sync_runs)).one()
    assert {(s.scope_gid, s.status) for s in scopes} == {
        ("999999999", "failed"), (data.workspace_gid, "succeeded")
    }
    assert run.status == "partial" and run.scopes_failed == 1


def test_a_refused_token_stops_the_run_and_writes_nothing(asana_server, make_settings, engine, sleep):
    with pytest.raises(AuthError) as info:
        run_sync(make_settings(token="wrong-token"), sleep=sleep)
    assert info.value.status == 401
    assert "wrong-token" not in str(info.value)
    assert sa.inspect(engine).get_table_names() == []  # not even migrated


def test_a_plan_without_time_tracking_is_said_plainly(asana_server, make_settings, sleep):
    asana_server.payment_required = True
    with pytest.raises(AuthError, match="paid plan"):
        run_sync(make_settings(), sleep=sleep)


def test_bad_records_are_set_aside_and_the_run_goes_on(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    bad = next(iter(data.entries.values()))
    data.edit_entry(bad.gid, duration_minutes="ninety")  # the API sending a mistyped field
    result = run_sync(make_settings([Scope("workspace", data.workspace_gid)]), sleep=sleep)

    assert result.status == "succeeded"
    assert result.counts.rejected == 1
    with engine.connect() as conn:
        rejected = conn.execute(sa.select(schema.rejected_records)).one()
        assert conn.scalar(sa.select(schema.sync_runs.c.rejected)) == 1
    assert rejected.entry_gid == bad.gid
    assert "duration_minutes is not an integer" in rejected.reason
    assert '"ninety"' in rejected.payload
    assert rejected.run_id == result.run_id
    assert bad.gid not in stored_rows(engine)


def test_backfill_keeps_only_its_window(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    window = DateWindow(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    result = run_backfill(
        make_settings(), scopes=[Scope("workspace", data.workspace_gid)], window=window, sleep=sleep
    )
    rows = stored_rows(engine)
    expected = {g: r for g, r in expected_rows(data).items() if r["entered_on"] in window}
    assert rows == expected and expected
    assert result.counts.entries == len(expected)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(schema.sync_runs.c.command)) == "backfill"


def test_five_thousand_entries_in_fifty_overlapping_scopes(database_url, backend, sleep):
    """The acceptance shape, on every backend: 5,000 entries, 50 overlapping scopes, twice;
    the second run writes nothing outside the run bookkeeping."""
    data = Dataset.generate(seed=11, entries=5000, users=25, projects=15, portfolios=5, tasks=200)
    scopes = (
        [Scope("user", g) for g in data.users]
        + [Scope("project", g) for g in data.projects]
        + [Scope("portfolio", g) for g in data.portfolios]
        + [Scope("task", g) for g in list(data.tasks)[:4]]
        + [Scope("workspace", data.workspace_gid)]
    )
    assert len(scopes) == 50
    with AsanaSimulator(data) as server:
        settings = Settings(
            asana=AsanaSettings(base_url=server.base_url, token=Secret(server.token),
                                requests_per_minute=1_000_000),
            database_url=database_url, scopes=tuple(scopes),
        )
        first = run_sync(settings, sleep=sleep)
        engine = engines.make_engine(database_url)
        assert stored_rows(engine) == expected_rows(data)
        before = table_snapshot(engine)
        counters = tuple_counters(engine, runs_inserted=1) if backend == "postgresql" else None
        if counters is not None:
            assert counters["time_tracking_entries"] == (5000, 0, 0)
        second = run_sync(settings, sleep=sleep)
        assert table_snapshot(engine) == before
        if counters is not None:
            after = tuple_counters(engine, runs_inserted=counters["sync_runs"][0] + 1)
            changed = {t for t in counters if counters[t] != after[t]}
            assert all(t.startswith("sync_run") for t in changed), changed
        engine.dispose()
    assert first.counts.inserted == 5000
    assert second.counts.inserted == second.counts.updated == 0
    assert second.counts.unchanged == first.counts.entries


def test_concurrent_and_sequential_runs_build_the_same_tables(tmp_path, sleep):
    data = Dataset.generate(seed=8, entries=1500, users=12, projects=8, portfolios=3, tasks=80)
    scopes = tuple(all_scopes(data))
    tables = {}
    with AsanaSimulator(data) as server:
        for concurrency in (1, 8):
            url = f"sqlite:///{tmp_path / f'c{concurrency}.db'}"
            settings = Settings(
                asana=AsanaSettings(base_url=server.base_url, token=Secret(server.token),
                                    requests_per_minute=1_000_000, concurrency=concurrency,
                                    page_size=30),
                database_url=url, scopes=scopes,
            )
            result = run_sync(settings, sleep=sleep)
            assert result.status == "succeeded"
            engine = engines.make_engine(url)
            t, link = schema.time_tracking_entries, schema.time_tracking_entry_scopes
            # the same rows and links; only the load timestamps may differ
            content = [t.c.gid, t.c.raw, t.c.content_hash, t.c.deleted_at,
                       *(t.c[c] for c in expected_rows(data)[next(iter(data.entries))])]
            with engine.connect() as conn:
                entries = conn.execute(sa.select(*content).order_by(t.c.gid)).all()
                links = conn.execute(sa.select(link.c.scope_type, link.c.scope_gid, link.c.entry_gid)
                                     .order_by(*link.primary_key.columns)).all()
            engine.dispose()
            tables[concurrency] = (entries, links, result.counts.entries, result.counts.inserted)
    assert tables[1] == tables[8]


def test_a_later_sync_is_planned_from_what_the_database_holds(
    splitting, asana_server, make_settings, engine, backend, sleep
):
    """Entries per day per scope, read back on every backend, size the next sync's
    listings; the run's windows and listings are recorded."""
    data = asana_server.dataset
    workspace = Scope("workspace", data.workspace_gid)
    settings = make_settings([workspace], page_size=10, concurrency=6)
    run_sync(settings, sleep=sleep)
    per_day = Counter(e.entered_on for e in data.entries.values())
    spring = DateWindow(dt.date(2026, 3, 1), dt.date(2026, 5, 31))
    with engine.connect() as conn:
        assert dict(entries_by_day(conn, workspace, DateWindow())) == per_day
        assert dict(entries_by_day(conn, workspace, spring)) == {
            d: n for d, n in per_day.items() if d in spring}

    second = run_sync(settings, sleep=sleep)
    assert second.status == "succeeded" and second.scopes[0].listings > 1
    assert stored_rows(engine) == expected_rows(data)
    assert second.counts.unchanged == len(data.entries)  # each entry once, in one window
    backfill = run_backfill(settings, window=spring, sleep=sleep)
    recent = run_sync(settings, recent_days=30, sleep=sleep)  # read in full days ago: recent
    s = schema.sync_run_scopes
    with engine.connect() as conn:
        rows = conn.execute(sa.select(s.c.run_id, s.c.window_since, s.c.window_until,
                                      s.c.listings, s.c.requests).order_by(s.c.run_id)).all()
        last_full = runs.last_full_reads(conn)
    today = runs.utcnow().date()
    assert [(r.window_since, r.window_until) for r in rows] == [
        (None, None), (None, None), (spring.since, spring.until),
        (today - dt.timedelta(days=29), None)]
    assert rows[1].listings == second.scopes[0].listings and rows[1].requests >= 10
    assert backfill.scopes[0].window == spring and recent.scopes[0].listings == 1
    assert set(last_full) == {workspace}
