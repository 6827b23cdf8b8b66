"""Locks per scope, on every backend: runs over disjoint scopes share a database, a run
over a scope that another holds exits 4 naming it, and a dead run's locks are free."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from etl.run import record
from etl.store import schema
from etl.config import Scope
from etl.errors import ExitCode, LockError
from etl.run.pipeline import run_sync
from tests.helpers import expected_rows, listed, start_sync, stored_rows


def test_a_second_run_exits_4_naming_the_run_that_holds_the_lock(
    asana_server, make_settings, engine, sleep
):
    settings = make_settings(page_size=50)
    held, release = threading.Event(), threading.Event()

    def hold_on_second_page(path, params):
        if "offset" in params and not release.is_set():
            held.set()
            release.wait(timeout=30)

    asana_server.before_answer = hold_on_second_page
    outcome: dict = {}
    first = threading.Thread(target=lambda: outcome.update(result=run_sync(settings, sleep=sleep)))
    first.start()
    try:
        assert held.wait(timeout=30), "the first run never reached its second page"
        # a first run begins listing while it makes the schema: wait for its row
        deadline = time.monotonic() + 30
        while not running(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockError) as info:
            run_sync(settings, sleep=sleep)
    finally:
        release.set()
        first.join(timeout=60)
    assert info.value.exit_code == ExitCode.LOCKED
    assert "another run holds scope " in str(info.value)
    assert ": run #1 (sync, pid " in str(info.value)
    assert outcome["result"].status == "succeeded"
    # the refused run left no trace, and the lock is free again
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.sync_runs)) == 1
    asana_server.before_answer = None
    assert run_sync(settings, sleep=sleep).status == "succeeded"
    assert stored_rows(engine) == expected_rows(asana_server.dataset)


def running(engine) -> bool:
    try:
        with engine.connect() as conn:
            return bool(conn.scalar(sa.select(sa.func.count()).select_from(schema.sync_runs)
                                    .where(schema.sync_runs.c.status == "running")))
    except sa.exc.SQLAlchemyError:  # no tables yet
        return False


def runs_begun(engine) -> int:
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(schema.sync_runs))
    except sa.exc.SQLAlchemyError:  # no tables yet
        return 0


def test_runs_over_disjoint_scopes_share_a_database_and_an_overlapping_one_exits_4(
    asana_server, engine, database_url, tmp_path
):
    data = asana_server.dataset
    users = sorted(data.users)
    first, second, overlapping = users[:5], users[5:], [users[4], users[9]]
    held, release = threading.Event(), threading.Event()

    def hold_the_first_run(path, params):
        # the first run's first user waits at its second page until told, and the second
        # run's later pages wait for both runs' rows: a run's row is written after the
        # schema is made, which one of them waits for while the other is already reading
        if "offset" not in params or release.is_set():
            return
        if params.get("user") == first[0]:
            held.set()
            release.wait(timeout=60)
        elif params.get("user") in second:
            deadline = time.monotonic() + 60
            while runs_begun(engine) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)

    asana_server.before_answer = hold_the_first_run
    # both on a database with no schema yet: they take turns to migrate it
    a = start_sync(tmp_path, "a", asana_server, database_url, listed("users", first))
    b = start_sync(tmp_path, "b", asana_server, database_url, listed("users", second))
    try:
        assert held.wait(timeout=60), "the first run never reached its second page"
        b_output, _ = b.communicate(timeout=120)
        assert b.returncode == 0, b_output
        started = time.monotonic()
        c = start_sync(tmp_path, "c", asana_server, database_url, listed("users", overlapping))
        c_output, _ = c.communicate(timeout=60)
        assert c.returncode == 4, c_output
        assert time.monotonic() - started < 30  # at once, not after the run in flight
        assert f"another run holds scope user:{first[4]}: run #" in c_output
    finally:
        release.set()
        a_output, _ = a.communicate(timeout=120)
    assert a.returncode == 0, a_output
    asana_server.before_answer = None

    with engine.connect() as conn:
        rows = conn.execute(sa.select(schema.sync_runs).order_by(schema.sync_runs.c.id)).all()
    assert [r.status for r in rows] == ["succeeded", "succeeded"]  # the refused one left none
    one, two = rows
    assert one.started_at < two.finished_at and two.started_at < one.finished_at  # side by side
    assert stored_rows(engine) == expected_rows(data)  # every user's entries: all of them


def test_a_dead_runs_scopes_are_free_and_a_live_runs_are_not(
    asana_server, make_settings, engine, sleep, monkeypatch, request
):
    """Only a run whose process is gone is marked abandoned: its locks are free."""
    from etl.store.lock import scope_locks
    from etl.store import runs

    users = sorted(asana_server.dataset.users)
    settings = make_settings([Scope("user", users[0])])
    run_sync(settings, sleep=sleep)  # the schema
    now = runs.utcnow()
    gone = subprocess.Popen(["true"])
    gone.wait()
    living = subprocess.Popen(["sleep", "120"])
    request.addfinalizer(living.kill)
    time.sleep(0.1)
    with engine.begin() as conn:  # runs left running: one alive (below), some dead
        alive = runs.start_run(conn, "sync", 1, now)
        runs.start_scope(conn, alive, Scope("user", users[1]), now)
        dead = runs.start_run(conn, "sync", 1, now)
        runs.start_scope(conn, dead, Scope("user", users[2]), now)
        # on this host, but its pid is gone
        conn.execute(sa.update(schema.sync_runs).where(schema.sync_runs.c.id == dead)
                     .values(pid=gone.pid))
        # a live process, and yet its lock is free (it lost its lock connection and
        # will find out before its next write): never marked abandoned
        lost = runs.start_run(conn, "sync", 1, now)
        runs.start_scope(conn, lost, Scope("user", users[4]), now)
        conn.execute(sa.update(schema.sync_runs).where(schema.sync_runs.c.id == lost)
                     .values(pid=living.pid))
        # this very process, but no run of it: left by a run that ended badly
        mine = runs.start_run(conn, "sync", 1, now)
        runs.start_scope(conn, mine, Scope("user", users[6]), now)
        # on another host: cannot be looked at from here, so only after ABANDON_GRACE
        elsewhere = runs.start_run(conn, "sync", 1, now)
        runs.start_scope(conn, elsewhere, Scope("user", users[5]), now)
        conn.execute(sa.update(schema.sync_runs).where(schema.sync_runs.c.id == elsewhere)
                     .values(hostname="another-host"))
    with scope_locks(engine, [Scope("user", users[1])], "sync"):  # the live one's lock
        result = run_sync(make_settings([Scope("user", users[3])]), sleep=sleep)
    assert result.status == "succeeded"
    assert status(engine) == {1: "succeeded", alive: "running", dead: "abandoned",
                              lost: "running", mine: "abandoned", elsewhere: "running",
                              result.run_id: "succeeded"}
    monkeypatch.setattr(record, "ABANDON_GRACE", 0.0)
    assert run_sync(make_settings([Scope("user", users[3])]), sleep=sleep).status == "succeeded"
    assert status(engine)[elsewhere] == "abandoned"
    assert status(engine)[lost] == "running"


def status(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(schema.sync_runs.c.id, schema.sync_runs.c.status)).all())


def test_runs_over_scopes_that_share_entries_write_them_side_by_side_exactly(
    asana_server, engine, database_url, tmp_path
):
    """Users and projects hold the same entries: two runs insert, update and delete them
    at once (PostgreSQL's COPY of new entries meets the other run's, batches may meet
    deadlocks), and the tables end up exact."""
    data = asana_server.dataset

    def together(step: str) -> None:
        a = start_sync(tmp_path, f"users-{step}", asana_server, database_url,
                       listed("users", sorted(data.users)))
        b = start_sync(tmp_path, f"projects-{step}", asana_server, database_url,
                       listed("projects", sorted(data.projects)))
        for process in (a, b):
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, output

    together("first")
    assert stored_rows(engine) == expected_rows(data)
    gids = sorted(data.entries)
    gone = gids[::7]
    for gid in gone:
        data.delete_entry(gid)
    for gid in gids[3::11]:
        if gid in data.entries:
            data.edit_entry(gid, duration_minutes=data.entries[gid].duration_minutes + 1)
    together("second")
    assert stored_rows(engine) == expected_rows(data)
    with engine.connect() as conn:
        deleted = set(conn.execute(sa.select(schema.time_tracking_entries.c.gid).where(
            schema.time_tracking_entries.c.deleted_at.is_not(None))).scalars())
    assert deleted == set(gone)


@pytest.mark.slow
def test_two_first_syncs_on_a_new_sqlite_file_exit_0_or_4_never_2(asana_server, tmp_path):
    """They race to make the file and its schema: the loser waits or is refused by a
    held scope, never 'database is locked'."""
    users = sorted(asana_server.dataset.users)
    codes = []
    for attempt in range(8):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        url = f"sqlite:///{folder / 'asana.db'}"
        pair = [start_sync(folder, name, asana_server, url, listed("users", users))
                for name in "ab"]
        for process in pair:
            output, _ = process.communicate(timeout=120)
            assert process.returncode in (0, 4), output
            codes.append(process.returncode)
    assert 0 in codes
