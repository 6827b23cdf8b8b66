"""SIGKILL during `asana-etl db upgrade`, on a fresh database and on each earlier
revision: the next `db upgrade` must succeed and leave the schema a clean upgrade makes.

On SQLite an upgrade is one transaction, so a kill leaves the database as it was (or at
head, if the kill came after the commit). MariaDB commits DDL statement by statement: a
kill can leave a migration half-done, and the next run must complete it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.store import engines, migrate
from tests.conftest import private_database
from tests.test_migrations import REVISIONS, drift

#: A fresh database, then each revision before head.
STARTS: list[str | None] = [None, *REVISIONS[:-1]]
#: Kills per backend: two from each starting point, one in each half of its upgrade,
#: the starting points' moments interleaved so that together they cover an upgrade at
#: 2 x len(STARTS) evenly spaced moments (three each took two minutes on MariaDB with
#: ten migrations: the suite's longest test by far).
KILLS = 2 * len(STARTS)

#: `asana-etl db upgrade` itself, saying "go" once Python has started and imported it,
#: so that what is timed, and killed, is the upgrade rather than the interpreter's start.
VICTIM = [sys.executable, "-c",
          "import alembic.command, etl.cli; print('go', flush=True); etl.cli.main()",
          "db", "upgrade"]
UPGRADE = [sys.executable, "-m", "etl", "db", "upgrade"]


@pytest.fixture(params=["sqlite", "mysql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes private, empty databases on one backend (dropped at the end). MariaDB
    unreachable: skipped, or failed under CI=true (conftest.server_engine)."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def make() -> str:
            if request.param == "sqlite":
                return f"sqlite:///{tmp_path / f'db{next(numbers)}.sqlite'}"
            return stack.enter_context(private_database(request.param))

        yield make


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ASANA_ETL_CONFIG"}
    return {**env, "ASANA_ETL_DATABASE_URL": url}


def at_revision(url: str, revision: str | None) -> None:
    if revision is not None:
        engine = engines.make_engine(url)
        migrate.upgrade(engine, revision)
        engine.dispose()


def start_victim(url: str, cwd: Path) -> subprocess.Popen[str]:
    """The upgrade, started and past its imports."""
    victim = subprocess.Popen(VICTIM, env=_env(url), cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    assert victim.stdout.readline() == "go\n", victim.communicate()
    return victim


def upgrade_seconds(url: str, cwd: Path) -> float:
    """How long an upgrade from the database's revision to head takes: from "go" to
    the line that reports the new revision (the interpreter's exit, a good part of the
    time to exit, is not worth killing)."""
    victim = start_victim(url, cwd)
    assert victim.stdout is not None
    began = time.monotonic()
    reported = victim.stdout.readline()
    seconds = time.monotonic() - began
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 0 and f"is at revision {migrate.HEAD_REVISION}" in reported, err
    return seconds


def schema(url: str) -> dict[str, Any]:
    """What an inspector sees: every table and view with its columns, keys, indexes
    and options, and the revision alembic records."""
    engine = engines.make_engine(url)
    try:
        inspector = sa.inspect(engine)
        found: dict[str, Any] = {"revision": migrate.current_revision(engine)}
        for view in inspector.get_view_names():
            found[f"view {view}"] = _columns(inspector, view)
        for table in inspector.get_table_names():
            found[f"table {table}"] = {
                "columns": _columns(inspector, table),
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(table)),
                "foreign keys": sorted((fk["name"], tuple(fk["constrained_columns"]),
                                        fk["referred_table"], repr(fk["options"]))
                                       for fk in inspector.get_foreign_keys(table)),
                "options": inspector.get_table_options(table),
            }
        return found
    finally:
        engine.dispose()


def _columns(inspector: sa.Inspector, name: str) -> list[tuple[str, ...]]:
    return sorted((c["name"], repr(c["type"]), repr(c["nullable"]), repr(c.get("default")))
                  for c in inspector.get_columns(name))


def measure(new_database: Callable[[], str], cwd: Path) -> tuple[dict[str | None, float],
                                                                dict[str, Any]]:
    """How long an upgrade from each starting point takes, and the schema that one
    from scratch makes (by the same command): what every rerun must make."""
    durations = {}
    for start in STARTS:
        url = new_database()
        at_revision(url, start)
        durations[start] = upgrade_seconds(url, cwd)
        if start is None:
            head = schema(url)
            assert head["revision"] == migrate.HEAD_REVISION and drift_at(url) == []
    return durations, head


def drift_at(url: str) -> list[Any]:
    engine = engines.make_engine(url)
    try:
        return drift(engine)
    finally:
        engine.dispose()


def kill_after(url: str, seconds: float, cwd: Path) -> bool:
    """Start an upgrade, SIGKILL it `seconds` after "go"; whether it was still running."""
    victim = start_victim(url, cwd)
    time.sleep(seconds)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    return victim.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkills_during_db_upgrade_then_db_upgrade_completes_the_schema(new_database, tmp_path):
    durations, head = measure(new_database, tmp_path)
    killed, left = 0, []
    for i in range(KILLS):
        start = STARTS[i % len(STARTS)]
        url = new_database()
        at_revision(url, start)
        before = schema(url)
        wait = durations[start] * (i + 0.5) / KILLS
        caught = kill_after(url, wait, tmp_path)
        if not caught:  # it ran faster than when it was timed (the machine was busier
            # then): once more, on a new database, twice as soon
            left.append((start, "ended before the kill"))
            url = new_database()
            at_revision(url, start)
            before = schema(url)
            caught = kill_after(url, wait / 2, tmp_path)
        killed += caught
        after = schema(url)
        left.append((start, after["revision"]))
        if url.startswith("sqlite"):  # one transaction: as it was, whole, or at head
            assert after in (before, head), f"killed upgrading from {start}"
        rerun = subprocess.run(UPGRADE, env=_env(url), cwd=tmp_path, capture_output=True,
                               text=True, timeout=120)
        assert rerun.returncode == 0, f"killed upgrading from {start}: {rerun.stderr}"
        assert schema(url) == head, f"killed upgrading from {start}"
        assert drift_at(url) == [], f"killed upgrading from {start}"
    # kills past the end of an upgrade prove nothing: most must have landed in one
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} kills caught an upgrade: {left}"
