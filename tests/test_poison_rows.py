"""One row the database refuses never blocks the rest: the batch is split until the
refused rows are found, they go to `rejected_records` with the database's reason, and
the batch's other rows load; the next run does the same instead of failing again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from etl.store import migrate, schema
from etl.run.pipeline import run_sync
from tests.helpers import expected_rows, stored_rows

POISON = "Poison Pill"


def refuse_the_poison(engine) -> None:
    """A constraint of the test's own that the server enforces: a real refusal, the way a
    value too long or out of range is one."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for event in ("INSERT", "UPDATE"):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER no_poison_{event.lower()} BEFORE {event} ON "
                    f"time_tracking_entries WHEN NEW.created_by_name = '{POISON}' "
                    "BEGIN SELECT RAISE(ABORT, 'no poison here'); END")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE time_tracking_entries ADD CONSTRAINT no_poison CHECK "
                f"(created_by_name IS NULL OR created_by_name <> '{POISON}')")


def rejected(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.rejected_records)
                            .order_by(schema.rejected_records.c.id)).all()


def test_rows_the_database_refuses_are_set_aside_and_the_rest_load(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    settings = make_settings(page_size=50)
    migrate.upgrade(engine)
    refuse_the_poison(engine)
    user = sorted(data.users)[3]
    data.rename_user(user, POISON)
    poisoned = {gid for gid, e in data.entries.items() if e.user_gid == user}
    assert poisoned
    wanted = {gid: row for gid, row in expected_rows(data).items() if gid not in poisoned}

    for night in range(2):  # the next night is not blocked either
        result = run_sync(settings, sleep=sleep)
        assert result.status == "succeeded", result.failed_scopes
        assert stored_rows(engine) == wanted
        refused = [r for r in rejected(engine) if r.run_id == result.run_id]
        assert {r.entry_gid for r in refused} == poisoned
        assert all(r.reason.startswith("the database refused it: ") for r in refused)
        assert all(POISON in r.payload for r in refused)  # the record, to look at later
        assert result.rejected == len(refused)


@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
def test_mariadb_takes_a_70000_character_name_or_sets_it_aside(
    asana_server, make_settings, engine, sleep
):
    data = asana_server.dataset
    user = sorted(data.users)[1]
    name = "Ünïcödé " + "x" * 69_992  # 70,000 characters, more bytes
    data.rename_user(user, name)
    result = run_sync(make_settings(page_size=50), sleep=sleep)
    assert result.status == "succeeded", result.failed_scopes
    stored = stored_rows(engine)
    refused = {r.entry_gid for r in rejected(engine)}
    expected = expected_rows(data)
    for gid, row in expected.items():
        if gid in refused:
            assert gid not in stored
        else:
            assert stored[gid] == row  # the long name whole, or any other entry exactly
    assert set(stored) | refused == set(expected)
