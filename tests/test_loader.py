"""The batch loader on its own, on every backend: batches gathered as the fetcher's
messages come, written in one transaction each with the run's counters, refused rows
found by halving and set aside, confirmations written with the pages."""

from __future__ import annotations

import collections
import gc
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from etl.config import Scope
from etl.run import loader
from etl.run.loader import BatchLoader
from etl.run.messages import Confirmed, PageRows, ScopeListed
from etl.run.writer import Writer
from etl.store import migrate, runs, schema
from etl.store.lock import scope_locks
from etl.transform import row_values, to_row
from tests.test_poison_rows import POISON, refuse_the_poison

USER = Scope("user", "1200000000000001")
PROJECT = Scope("project", "1200000000000014")


def entry(gid: int, name: str = "Ada") -> dict:
    return {"gid": str(gid), "duration_minutes": 30, "entered_on": "2026-03-02",
            "attributable_to": None, "created_by": {"gid": "1200000000000001", "name": name}}


def page(scope: Scope, gids: range, number: int = 1, poisoned: set[int] = frozenset()) -> PageRows:
    rows = [row_values(to_row(entry(g, POISON if g in poisoned else "Ada"))) for g in gids]
    return PageRows(scope, number, 0, rows, [], [])


@pytest.fixture
def run(engine) -> Iterator[tuple[BatchLoader, int]]:
    """A run's row and its scopes' rows, its locks held, and a loader for it."""
    migrate.upgrade(engine)
    with scope_locks(engine, [USER, PROJECT], "test") as locks:
        writer = Writer(engine, locks)

        def start(conn: sa.Connection) -> int:
            run_id = runs.start_run(conn, "test", 2, runs.utcnow())
            for scope in (USER, PROJECT):
                runs.start_scope(conn, run_id, scope, runs.utcnow())
            return run_id

        run_id = writer.transaction(start)
        yield BatchLoader(writer, run_id), run_id


def feeder(messages: list) -> collections.deque:
    return collections.deque(messages)


def test_a_batch_gathers_pages_until_another_kind_of_message_and_drops_closed_scopes(run):
    batch_loader, _ = run
    waiting = feeder([page(PROJECT, range(5, 7)), page(USER, range(7, 9), 2),
                      ScopeListed(USER), page(USER, range(9, 10), 3)])
    batch, ended = batch_loader.gather(page(USER, range(1, 5)), lambda timeout: waiting.popleft(),
                                       lambda scope: scope == USER)
    assert [(m.scope, m.number) for m in batch] == [(USER, 1), (USER, 2)]
    assert isinstance(ended, ScopeListed)
    assert len(waiting) == 1  # the page after it waits for the next batch


def test_a_batch_ends_when_it_holds_enough_rows(run, monkeypatch):
    batch_loader, _ = run
    monkeypatch.setattr(loader, "BATCH_ROWS", 6)
    waiting = feeder([page(USER, range(5, 9), 2), page(USER, range(9, 12), 3)])
    batch, ended = batch_loader.gather(page(USER, range(1, 5)), lambda timeout: waiting.popleft(),
                                       lambda scope: True)
    assert len(batch) == 2 and ended is None


def test_the_cycle_collector_waits_while_a_batch_is_gathered_and_written(run):
    """Held off during a batch (its objects hold no cycle), as it was after: on, or off
    if the caller had turned it off."""
    batch_loader, _ = run
    during = []

    def receive(timeout: float):
        during.append(gc.isenabled())
        return ScopeListed(USER)

    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            batch, _ = batch_loader.gather(page(USER, range(1, 3)), receive, lambda scope: True)
            batch_loader.load(batch)
            assert during[-1] is False and gc.isenabled() is enabled
        finally:
            gc.enable()


def test_a_batch_of_long_rows_ends_sooner(run, monkeypatch):
    """What a batch holds in memory is bounded by its rows' size too, not only their count."""
    batch_loader, _ = run
    long = [row_values(to_row(entry(g, "Ada" * 300))) for g in range(1, 5)]
    monkeypatch.setattr(loader, "BATCH_CHARS", sum(len(row[loader.RAW]) for row in long) * 2)
    waiting = feeder([PageRows(USER, 2, 0, long, [], []), page(USER, range(9, 12), 3)])
    batch, ended = batch_loader.gather(PageRows(USER, 1, 0, long, [], []),
                                       lambda timeout: waiting.popleft(), lambda scope: True)
    assert len(batch) == 2 and ended is None and len(waiting) == 1


def test_a_batch_writes_rows_links_confirmations_and_counters_together(run, engine):
    batch_loader, run_id = run
    assert batch_loader.load([page(USER, range(1, 11)), page(PROJECT, range(6, 16))]).scopes == {
        USER: (runs.PageCounts(entries=10, inserted=10), 1),
        PROJECT: (runs.PageCounts(entries=10, inserted=5, unchanged=5), 1),
    }
    done = batch_loader.load([Confirmed(USER, "3", None), page(PROJECT, range(6, 8), 2)])
    assert done.scopes[USER] == (runs.PageCounts(deleted=1), 0)
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.id == run_id)).one()
        links = conn.scalar(sa.select(sa.func.count()).select_from(schema.time_tracking_entry_scopes))
        deleted = conn.scalar(sa.select(schema.time_tracking_entries.c.gid)
                              .where(schema.time_tracking_entries.c.deleted_at.is_not(None)))
    assert (row.entries_seen, row.inserted, row.unchanged, row.deleted) == (22, 15, 7, 1)
    assert links == 20 and deleted == "3"


def test_rows_the_database_refuses_are_found_by_halving_and_set_aside(run, engine):
    batch_loader, run_id = run
    refuse_the_poison(engine)
    counts, pages = batch_loader.load([page(USER, range(1, 41), poisoned={7, 33})]).scopes[USER]
    assert (counts.inserted, counts.rejected, counts.entries, pages) == (38, 2, 40, 1)
    with engine.connect() as conn:
        refused = conn.execute(sa.select(schema.rejected_records.c.entry_gid,
                                         schema.rejected_records.c.reason)).all()
        stored = conn.scalar(sa.select(sa.func.count()).select_from(schema.time_tracking_entries))
    assert sorted(gid for gid, _ in refused) == ["33", "7"]
    assert all(reason.startswith("the database refused it: ") for _, reason in refused)
    assert stored == 38
