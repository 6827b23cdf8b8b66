"""Deletions, edits, renames, moves and re-appearances across syncs, on every backend."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from etl.store import schema
from etl.config import DateWindow, Scope
from etl.run.pipeline import run_backfill, run_sync
from tests.helpers import expected_rows, stored_rows


def deleted_gids(engine) -> set[str]:
    t = schema.time_tracking_entries
    with engine.connect() as conn:
        return set(conn.execute(sa.select(t.c.gid).where(t.c.deleted_at.is_not(None))).scalars())


def links_of(engine, gid: str) -> set[tuple[str, str]]:
    t = schema.time_tracking_entry_scopes
    with engine.connect() as conn:
        return {(r.scope_type, r.scope_gid)
                for r in conn.execute(sa.select(t).where(t.c.entry_gid == gid))}


def test_the_next_sync_matches_the_server_after_every_kind_of_change(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings()
    run_sync(settings, sleep=sleep)
    entries = list(data.entries.values())
    gone = [entries[0].gid, entries[1].gid, entries[2].gid]
    for gid in gone:
        data.delete_entry(gid)
    data.edit_entry(entries[3].gid, duration_minutes=entries[3].duration_minutes + 1,
                    entered_on=dt.date(2026, 6, 30))
    data.rename_user(entries[4].user_gid, "Nouveau Nom ✓")
    data.rename_project(next(iter(data.projects)), "Renamed project “2”")
    moved = next(e for e in entries[5:] if e.attributable_to)
    data.edit_entry(moved.gid, attributable_to=next(p for p in data.projects if p != moved.attributable_to))
    new = data.add_entry(next(iter(data.tasks)), entries[6].user_gid, 42, dt.date(2026, 7, 1))

    result = run_sync(settings, sleep=sleep)

    assert result.status == "succeeded"
    assert stored_rows(engine) == expected_rows(data)  # every live row, field for field
    assert deleted_gids(engine) == set(gone)  # deleted rows are kept, stamped
    assert result.counts.deleted == 3 and result.counts.inserted == 1
    with engine.connect() as conn:
        assert conn.scalar(sa.select(schema.sync_runs.c.deleted).where(
            schema.sync_runs.c.id == result.run_id)) == 3
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.sync_run_seen_entries)) == 0
    assert new.gid in stored_rows(engine)

    # a third sync over unchanged data finds nothing more to do
    requests_before = len(asana_server.requests)
    again = run_sync(settings, sleep=sleep)
    assert (again.counts.inserted, again.counts.updated, again.counts.deleted) == (0, 0, 0)
    third = asana_server.requests[requests_before:]
    assert [r.path for r in third if r.path.count("/") > 3] == []  # no GET by gid


def test_an_entry_that_comes_back_is_live_again(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    settings = make_settings()
    run_sync(settings, sleep=sleep)
    entry = next(iter(data.entries.values()))
    data.delete_entry(entry.gid)
    run_sync(settings, sleep=sleep)
    assert deleted_gids(engine) == {entry.gid}

    data.add_entry(entry.task_gid, entry.user_gid, entry.duration_minutes, entry.entered_on,
                   gid=entry.gid)
    result = run_sync(settings, sleep=sleep)
    assert deleted_gids(engine) == set()
    assert result.counts.updated == 1
    assert stored_rows(engine) == expected_rows(data)


def test_a_move_between_projects_unlinks_without_deleting(asana_server, make_settings, engine,
                                                          sleep):
    data = asana_server.dataset
    entry = next(e for e in data.entries.values() if e.attributable_to)
    old, new = entry.attributable_to, next(p for p in data.projects if p != entry.attributable_to)
    settings = make_settings([Scope("project", old)])
    run_sync(settings, sleep=sleep)
    data.edit_entry(entry.gid, attributable_to=new)

    result = run_sync(settings, sleep=sleep)

    assert result.counts.deleted == 0 and result.counts.updated == 1
    assert deleted_gids(engine) == set()
    assert stored_rows(engine)[entry.gid]["attributable_to_gid"] == new
    assert links_of(engine, entry.gid) == set()  # it left the only scope we list


def test_data_shifting_between_pages_never_marks_a_live_entry_deleted(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    project = max(data.projects, key=lambda p: sum(e.attributable_to == p for e in data.entries.values()))
    in_project = sorted(g for g, e in data.entries.items() if e.attributable_to == project)
    assert len(in_project) > 25
    other = next(p for p in data.projects if p != project)
    settings = make_settings([Scope("project", project), Scope("workspace", data.workspace_gid)],
                             page_size=10, concurrency=1)
    run_sync(settings, sleep=sleep)

    moved_out = []

    def shift(path, params):
        # after the first page of the project's listing, move its first two entries
        # elsewhere: everything after them slides two places, and the listing skips two
        # entries that never left the project
        if params.get("attributable_to") == project and "offset" in params and not moved_out:
            for gid in in_project[:2]:
                data.edit_entry(gid, attributable_to=other)
                moved_out.append(gid)

    asana_server.before_answer = shift
    result = run_sync(settings, sleep=sleep)
    asana_server.before_answer = None

    skipped = in_project[10:12]
    assert result.status == "succeeded"
    assert result.counts.deleted == 0 and deleted_gids(engine) == set()
    confirmed = [r.path.rsplit("/", 1)[1] for r in asana_server.requests if r.path.count("/") == 4]
    assert set(skipped) <= set(confirmed)  # the skipped ones were asked about, not deleted
    for gid in skipped:
        assert ("project", project) in links_of(engine, gid)
    # the moved entries may have been read, by both listings, before they moved: the
    # next sync sees where they are now
    run_sync(settings, sleep=sleep)
    assert stored_rows(engine) == expected_rows(data)


def test_entries_inserted_ahead_of_the_listing_cause_no_deletion(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings([Scope("workspace", data.workspace_gid)], page_size=25)
    run_sync(settings, sleep=sleep)
    task, user = next(iter(data.tasks)), next(iter(data.users))
    inserted: list[str] = []

    def insert_ahead(path, params):
        if "offset" in params and len(inserted) < 6:
            # small gids sort before everything already listed
            entry = data.add_entry(task, user, 15, dt.date(2026, 5, 5), gid=str(1000 + len(inserted)))
            inserted.append(entry.gid)

    asana_server.before_answer = insert_ahead
    result = run_sync(settings, sleep=sleep)
    asana_server.before_answer = None
    assert result.counts.deleted == 0 and deleted_gids(engine) == set()
    run_sync(settings, sleep=sleep)  # the next run picks up what this one could not see
    assert stored_rows(engine) == expected_rows(data)


def test_a_failed_listing_deletes_nothing(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    workspace = Scope("workspace", data.workspace_gid)
    settings = make_settings([workspace], page_size=50, max_retries=1)
    run_sync(settings, sleep=sleep)
    data.delete_entry(next(iter(data.entries)))
    asana_server.add_fault(500, times=100, when=lambda p, q: "offset" in q)
    result = run_sync(settings, sleep=sleep)
    assert result.status == "failed"
    assert deleted_gids(engine) == set()


def test_a_backfill_window_only_considers_its_own_entries(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    workspace = Scope("workspace", data.workspace_gid)
    run_sync(make_settings([workspace]), sleep=sleep)
    window = DateWindow(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    inside = next(e.gid for e in data.entries.values() if e.entered_on in window)
    outside = next(e.gid for e in data.entries.values() if e.entered_on not in window)
    data.delete_entry(inside)
    data.delete_entry(outside)
    result = run_backfill(make_settings([workspace]), window=window, sleep=sleep)
    assert deleted_gids(engine) == {inside}
    assert result.counts.deleted == 1


def test_only_unseen_entries_are_confirmed_with_asana(asana_server, make_settings, engine, sleep):
    """A first sync writes no seen-marks (every link it creates, it saw), and a re-sync
    marks the rest: neither asks Asana about a single entry. Only a real disappearance
    becomes a candidate."""
    data = asana_server.dataset

    def confirmations() -> list[str]:
        return [r.path.rsplit("/", 1)[1] for r in asana_server.requests if r.path.count("/") == 4]

    run_sync(make_settings(), sleep=sleep)
    assert confirmations() == []
    run_sync(make_settings(), sleep=sleep)
    assert confirmations() == []
    gone = next(iter(data.entries))
    data.delete_entry(gone)
    result = run_sync(make_settings(), sleep=sleep)
    assert set(confirmations()) == {gone} and result.counts.deleted == 1
