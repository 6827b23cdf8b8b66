"""One run at a time per database, on every backend."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from etl import db
from etl.errors import ExitCode, LockError
from etl.pipeline import run_sync
from tests.helpers import expected_rows, stored_rows


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
    assert "another run holds the lock on this database: run #1 (sync, pid " in str(info.value)
    assert outcome["result"].status == "succeeded"
    # the refused run left no trace, and the lock is free again
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(db.sync_runs)) == 1
    asana_server.before_answer = None
    assert run_sync(settings, sleep=sleep).status == "succeeded"
    assert stored_rows(engine) == expected_rows(asana_server.dataset)


def running(engine) -> bool:
    try:
        with engine.connect() as conn:
            return bool(conn.scalar(sa.select(sa.func.count()).select_from(db.sync_runs)
                                    .where(db.sync_runs.c.status == "running")))
    except sa.exc.SQLAlchemyError:  # no tables yet
        return False
