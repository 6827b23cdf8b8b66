"""Upserts: exact counts, unchanged rows never rewritten, links recorded once."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from etl.store import migrate, schema
from etl.config import Scope
from etl.store.links import link_batch, link_entries
from etl.store.load import upsert_entries
from etl.transform import row_values, to_row

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(days=1)


def raw(gid: str, minutes: int = 30, name: str = "Ada") -> dict:
    return {
        "gid": gid, "resource_type": "time_tracking_entry", "duration_minutes": minutes,
        "entered_on": "2026-01-05", "attributable_to": None,
        "created_by": {"gid": "7", "resource_type": "user", "name": name},
    }


@pytest.fixture
def migrated(engine):
    migrate.upgrade(engine)
    return engine


def rows(engine):
    t = schema.time_tracking_entries
    with engine.connect() as conn:
        return {r.gid: r for r in conn.execute(sa.select(t))}


def upsert(conn, raws, now, scope="s"):
    return upsert_entries(conn, [(scope, row_values(to_row(r))) for r in raws], now).counts[scope]


def test_insert_then_unchanged_then_update(migrated):
    with migrated.begin() as conn:
        counts = upsert(conn, [raw("1"), raw("2")], T0)
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 0)

    with migrated.begin() as conn:
        counts = upsert(conn, [raw("1"), raw("2", name="Ada Lovelace")], T1)
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 1)

    stored = rows(migrated)
    assert stored["1"].updated_at == T0 and stored["1"].first_seen_at == T0
    assert stored["2"].updated_at == T1 and stored["2"].first_seen_at == T0
    assert stored["2"].created_by_name == "Ada Lovelace"
    assert stored["2"].raw["created_by"]["name"] == "Ada Lovelace"


def test_counts_go_to_the_scope_that_saw_each_row(migrated):
    with migrated.begin() as conn:
        rows = [("user", row_values(to_row(raw("1")))), ("project", row_values(to_row(raw("1")))),
                ("project", row_values(to_row(raw("2"))))]
        counts = upsert_entries(conn, rows, T0).counts
    assert (counts["user"].inserted, counts["user"].unchanged) == (1, 0)
    assert (counts["project"].inserted, counts["project"].unchanged) == (1, 1)



def test_an_entry_deleted_by_hand_comes_back_with_its_old_link(migrated):
    """No foreign key: deleting an entry by hand leaves its links, and the next load of
    it must not trip over them."""
    user = Scope("user", "7")
    with migrated.begin() as conn:
        new = upsert_entries(conn, [(user, row_values(to_row(raw("1"))))], T0).new
        link_entries(conn, user, ["1"], T0, new=new)
    with migrated.begin() as conn:
        conn.execute(sa.delete(schema.time_tracking_entries))
    with migrated.begin() as conn:
        new = upsert_entries(conn, [(user, row_values(to_row(raw("1")))),
                                    (user, row_values(to_row(raw("2"))))], T1).new
        assert new == {"1", "2"}
        assert link_entries(conn, user, ["1", "2"], T1, new=new) == ["1"]
    with migrated.connect() as conn:
        links = conn.execute(sa.select(schema.time_tracking_entry_scopes.c.entry_gid)).scalars().all()
    assert sorted(links) == ["1", "2"]


def test_a_batch_links_all_its_scopes_at_once_and_names_what_was_linked_before(migrated):
    """`link_batch`: every scope's links, the new entries' written together (one INSERT
    on SQLite and MySQL); an old link among them (its entry deleted by hand) makes every
    scope probed, and each scope gets back what was linked before, as `link_entries`."""
    user, project = Scope("user", "7"), Scope("project", "8")
    with migrated.begin() as conn:
        link_entries(conn, user, ["1"], T0)  # gid 1's entry: deleted by hand since
        link_entries(conn, project, ["3"], T0)
    for new in ({"2", "4"}, {"1", "2", "4"}):  # without and with the old link among them
        with migrated.begin() as conn:
            before = link_batch(conn, {user: ["1", "2", "2"], project: ["3", "4"]},
                                {user: ["9", "1"], project: []}, T1, new)
            assert before == {user: ["1"], project: ["3"]}
            conn.rollback()
    with migrated.begin() as conn:
        link_batch(conn, {user: ["1", "2"], project: ["3", "4", "2"]}, {}, T1, {"2", "4"})
    with migrated.connect() as conn:
        links = conn.execute(sa.select(schema.time_tracking_entry_scopes.c.scope_gid,
                                       schema.time_tracking_entry_scopes.c.entry_gid)).all()
    assert sorted(links) == [("7", "1"), ("7", "2"), ("8", "2"), ("8", "3"), ("8", "4")]


def test_a_gid_twice_in_one_batch_is_written_once_in_its_last_version(migrated):
    with migrated.begin() as conn:
        counts = upsert(conn, [raw("1"), raw("1", minutes=45)], T0)
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 0, 1)
    assert rows(migrated)["1"].duration_minutes == 45
    # the same listing again: the last version is stored, so nothing is written
    with migrated.begin() as conn:
        counts = upsert(conn, [raw("1"), raw("1", minutes=45)], T1)
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 2)
    assert rows(migrated)["1"].updated_at == T0


def test_a_returning_entry_clears_deleted_at(migrated):
    with migrated.begin() as conn:
        upsert(conn, [raw("1")], T0)
        conn.execute(sa.update(schema.time_tracking_entries).values(deleted_at=T0))
    with migrated.begin() as conn:
        counts = upsert(conn, [raw("1")], T1)
    assert counts.updated == 1
    assert rows(migrated)["1"].deleted_at is None


def test_timestamps_come_back_as_utc(migrated):
    with migrated.begin() as conn:
        upsert(conn, [raw("1")], T0.astimezone(dt.timezone(dt.timedelta(hours=5))))
    assert rows(migrated)["1"].first_seen_at == T0
    assert rows(migrated)["1"].first_seen_at.tzinfo == dt.UTC


def test_links_are_recorded_once_per_scope(migrated):
    user, project = Scope("user", "7"), Scope("project", "8")
    with migrated.begin() as conn:
        upsert(conn, [raw("1"), raw("2")], T0)
        link_entries(conn, user, ["1", "2", "1"], T0)
        link_entries(conn, user, ["1", "2"], T0)
        link_entries(conn, project, ["2"], T0)
    with migrated.connect() as conn:
        links = conn.execute(sa.select(schema.time_tracking_entry_scopes.c.scope_type,
                                       schema.time_tracking_entry_scopes.c.entry_gid)).all()
    assert sorted(links) == [("project", "2"), ("user", "1"), ("user", "2")]


def test_linking_names_the_entries_linked_before(migrated):
    user = Scope("user", "7")
    with migrated.begin() as conn:
        upsert(conn, [raw("1"), raw("2"), raw("3")], T0)
        assert link_entries(conn, user, ["1", "2"], T0) == []
        # "4" was rejected: looked up, never linked
        assert link_entries(conn, user, ["3", "2", "1", "3"], T1, also=["4", "1"]) == ["2", "1"]
        assert link_entries(conn, user, [], T1, also=["3", "4"]) == ["3"]
        # entries this transaction inserted: their links are written without a lookup
        new = upsert_entries(conn, [(user, row_values(to_row(raw("5"))))], T1).new
        assert new == {"5"}
        assert link_entries(conn, user, ["5", "1"], T1, new=new) == ["1"]
    with migrated.connect() as conn:
        first_seen = dict(conn.execute(sa.select(schema.time_tracking_entry_scopes.c.entry_gid,
                                                 schema.time_tracking_entry_scopes.c.first_seen_at)).all())
    assert sorted(first_seen) == ["1", "2", "3", "5"] and first_seen["3"] == first_seen["5"] == T1
