"""The run's record on its own: its rows from start to finish, and the runs that died
before it (marked abandoned only when their locks are free and their process is gone).
The lock backends themselves are tested in test_lock.py."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa

from etl.asana.client import CallStats
from etl.config import DateWindow, Scope
from etl.run import record
from etl.run.record import RunRecord
from etl.run.result import ScopeResult
from etl.run.writer import Writer
from etl.store import migrate, runs, schema
from etl.store.lock import scope_locks

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SCOPE = Scope("user", "1200000000000001")
OTHER = Scope("user", "1200000000000002")


def left_running(engine, scope: Scope, *, pid: int, hostname: str) -> int:
    """A run's rows as a process that died in the middle of it would leave them."""
    with engine.begin() as conn:
        run_id = runs.start_run(conn, "sync", 1, runs.utcnow() - dt.timedelta(minutes=5))
        runs.start_scope(conn, run_id, scope, runs.utcnow())
        conn.execute(sa.update(schema.sync_runs).where(schema.sync_runs.c.id == run_id)
                     .values(pid=pid, hostname=hostname))
    return run_id


def statuses(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(schema.sync_runs.c.id, schema.sync_runs.c.status)).all())


def a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_records_its_rows_and_marks_a_dead_one_abandoned(engine, caplog):
    migrate.upgrade(engine)
    dead = left_running(engine, SCOPE, pid=a_dead_pid(), hostname=socket.gethostname())
    with scope_locks(engine, [SCOPE, OTHER], "sync") as locks:
        run = RunRecord(engine, Writer(engine, locks), locks, "sync")
        run_id = run.start({SCOPE: DateWindow(), OTHER: DateWindow(since=dt.date(2026, 1, 1))})
        assert statuses(engine) == {dead: "abandoned", run_id: "running"}
        assert f"runs #{dead}" in caplog.text or f"run #{dead}" in caplog.text
        result = ScopeResult(SCOPE, status=runs.SUCCEEDED, listings=2)
        run.close_scope(result, CallStats(requests=7, retries=1))
        run.finish(runs.PARTIAL, "1 of 2 scopes failed", failed=1)
        run.ended()
    with engine.connect() as conn:
        row = conn.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.id == run_id)).one()
        scopes = {r.scope_gid: r for r in conn.execute(sa.select(schema.sync_run_scopes)
                                                       .where(schema.sync_run_scopes.c.run_id == run_id))}
    assert (row.status, row.scopes_failed, row.error) == ("partial", 1, "1 of 2 scopes failed")
    assert row.pid == os.getpid() and row.finished_at is not None
    closed = scopes[SCOPE.gid]
    assert (closed.status, closed.requests, closed.retries, closed.listings) == ("succeeded", 7, 1, 2)
    assert scopes[OTHER.gid].window_since == dt.date(2026, 1, 1)
    assert (result.requests, result.retries) == (7, 1)


def test_a_run_whose_locks_are_held_or_whose_process_lives_is_left_alone(engine):
    migrate.upgrade(engine)
    held = left_running(engine, OTHER, pid=a_dead_pid(), hostname=socket.gethostname())
    living = left_running(engine, SCOPE, pid=1, hostname=socket.gethostname())  # init: alive
    with scope_locks(engine, [OTHER], "sync"):  # the first run's lock: still held
        with scope_locks(engine, [SCOPE], "sync") as locks:
            run = RunRecord(engine, Writer(engine, locks), locks, "sync")
            run.start({SCOPE: DateWindow()})
            run.ended()
    found = statuses(engine)
    assert found[held] == "running" and found[living] == "running"


def test_a_run_on_another_host_is_abandoned_only_after_the_grace(engine, monkeypatch):
    migrate.upgrade(engine)
    far = left_running(engine, OTHER, pid=4242, hostname="elsewhere.example")
    with scope_locks(engine, [SCOPE], "sync") as locks:
        run = RunRecord(engine, Writer(engine, locks), locks, "sync")
        run.start({SCOPE: DateWindow()})
        assert statuses(engine)[far] == "running" and far in run.suspects
        monkeypatch.setattr(record, "ABANDON_GRACE", 0.0)
        run.finish(runs.SUCCEEDED, None, failed=0)
        run.ended()
    assert statuses(engine)[far] == "abandoned"
