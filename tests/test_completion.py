"""A scope's completion on its own: its deletion candidates ordered a batch at a time,
each batch after the last was answered, then its final status; a failed listing
deletes nothing. End to end, the same is in test_deletions.py."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from etl.asana.client import CallStats
from etl.config import DateWindow, Scope
from etl.errors import AuthError, RequestRejectedError
from etl.run import completion
from etl.run.completion import ScopeCompletion
from etl.run.messages import ConfirmDone, ScopeListed
from etl.run.record import RunRecord
from etl.run.result import ScopeResult
from etl.run.writer import Writer
from etl.store import migrate, runs, schema
from etl.store.links import link_entries
from etl.store.load import upsert_entries
from etl.store.lock import scope_locks
from etl.transform import row_values, to_row

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SCOPE = Scope("user", "1200000000000001")


class Orders:
    """Stands in for the fetcher's `confirm`: records what the completion orders."""

    def __init__(self) -> None:
        self.confirm_orders: list[tuple[Scope, list[str]]] = []

    def confirm(self, scope: Scope, gids: list[str]) -> None:
        self.confirm_orders.append((scope, gids))


@pytest.fixture
def scope_run(engine):
    """Five entries linked to SCOPE by an earlier run, and a run of SCOPE begun."""
    migrate.upgrade(engine)
    earlier = runs.utcnow() - dt.timedelta(days=1)
    rows = [(SCOPE, row_values(to_row({"gid": str(g), "duration_minutes": 5,
                                       "entered_on": "2026-03-02"}))) for g in range(11, 16)]
    with engine.begin() as conn:
        upsert_entries(conn, rows, earlier)
        link_entries(conn, SCOPE, [values[0] for _, values in rows], earlier)
    with scope_locks(engine, [SCOPE], "sync") as locks:
        record = RunRecord(engine, Writer(engine, locks), locks, "sync")
        record.start({SCOPE: DateWindow()})
        orders = Orders()
        results = {SCOPE: ScopeResult(SCOPE)}
        yield ScopeCompletion(engine, orders, record, {SCOPE: DateWindow()}, results), orders
        record.ended()


def scope_status(engine) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.sync_run_scopes)).one()
    return row.status, row.error


def test_candidates_go_a_batch_at_a_time_then_the_scope_succeeds(scope_run, engine, monkeypatch):
    done, orders = scope_run
    monkeypatch.setattr(completion, "CONFIRM_BATCH", 2)
    assert done.handle(ScopeListed(SCOPE, listings=3, scope_stats=CallStats(requests=9))) is False
    assert done.handle(ConfirmDone(SCOPE)) is False
    assert done.handle(ConfirmDone(SCOPE)) is False
    assert done.handle(ConfirmDone(SCOPE, scope_stats=CallStats(requests=14))) is True
    assert orders.confirm_orders == [(SCOPE, ["11", "12"]), (SCOPE, ["13", "14"]), (SCOPE, ["15"])]
    assert scope_status(engine) == ("succeeded", None)
    assert (done.results[SCOPE].listings, done.results[SCOPE].requests) == (3, 14)


def test_a_failed_listing_deletes_nothing_and_records_why(scope_run, engine):
    done, orders = scope_run
    error = RequestRejectedError("HTTP 403: user: Forbidden", 403)
    assert done.handle(ScopeListed(SCOPE, error=error)) is True
    assert orders.confirm_orders == []
    assert scope_status(engine) == ("failed", "HTTP 403: user: Forbidden")


def test_a_refused_token_closes_the_scope_and_stops_the_run(scope_run, engine):
    done, _ = scope_run
    with pytest.raises(AuthError):
        done.handle(ScopeListed(SCOPE, error=AuthError("Asana refused the token", 401)))
    assert scope_status(engine) == ("failed", "Asana refused the token")


def test_a_run_that_stops_fails_the_scopes_still_open(scope_run):
    done, _ = scope_run
    (unfinished,) = done.fail_unfinished(KeyboardInterrupt())
    assert (unfinished.status, unfinished.error) == ("failed", "interrupted by SIGINT")
