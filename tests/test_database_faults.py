"""A database that fails under a run, seen the way a scheduler sees it: a TCP proxy of
our own (tests/proxy.py) between a real `asana-etl sync` process and the real server
cuts the connection that holds the run's locks, or every connection; a SQLite file
fills its disk; the fetcher process is killed. Each ends in one line and its exit code,
never two runs writing the same scopes, and a next run that is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.store import engines, lock, migrate, runs, schema
from etl.config import Scope
from etl.errors import LockError
from etl.simulator import AsanaSimulator, Dataset
from tests.helpers import TOKEN, expected_rows, listed, start_sync, stored_rows
from tests.proxy import TcpProxy

SERVERS = pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)


def wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.sync_runs).order_by(schema.sync_runs.c.id)).all()


def lock_connection_port(engine, backend: str, pid: int, scope: Scope) -> int | None:
    """The client port the server sees for the connection holding process `pid`'s lock
    on `scope` (None until it holds it)."""
    with engine.connect() as conn:
        if backend == "postgresql":
            return conn.scalar(sa.text(
                "SELECT client_port FROM pg_stat_activity WHERE application_name LIKE :label"),
                {"label": f"asana-etl sync pid {pid} %"})
        database = conn.scalar(sa.text("SELECT DATABASE()"))
        name = f"{lock.LOCK_NAME}:" + lock.digest(database, lock.lock_name(scope)).hex()[:40]
        holder = conn.scalar(sa.text("SELECT IS_USED_LOCK(:name)"), {"name": name})
        if holder is None:
            return None
        host = conn.scalar(sa.text(
            "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = :id"), {"id": holder})
        return int(host.rsplit(":", 1)[1])


def free(engine, scope: Scope) -> bool:
    try:
        with lock.scope_locks(engine, [scope], "probe"):
            return True
    except LockError:
        return False


def entries_seen(engine, run_id: int) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.select(schema.sync_runs.c.entries_seen)
                           .where(schema.sync_runs.c.id == run_id))


def hold(server: AsanaSimulator, limit: int, *also: tuple[int, threading.Event]):
    """Hold the requests of the run whose page size is `limit` (from its second page
    on) until the returned event is set; the first event is set once one is held. `also`:
    more (page size, event) pairs, each run held the same way until its event is set."""
    held, release = threading.Event(), threading.Event()
    waits = {str(limit): release, **{str(size): event for size, event in also}}

    def before_answer(path, params):
        event = waits.get(params.get("limit"))
        if event is not None and "offset" in params and not event.is_set():
            if event is release:
                held.set()
            event.wait(timeout=120)

    server.before_answer = before_answer
    return held, release


def server_address(database_url: str) -> tuple[str, int]:
    url = sa.make_url(database_url)
    return url.host, url.port


def one_line_and_no_traceback(output: str) -> list[str]:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors


@SERVERS
def test_a_run_that_loses_its_lock_connection_stops_and_the_next_run_completes_the_work(
    asana_server, database_url, engine, backend, tmp_path
):
    data = asana_server.dataset
    users = sorted(data.users)
    first = Scope("user", users[0])
    migrate.upgrade(engine)
    a_ended = threading.Event()  # the second run holds its scopes until the first ends
    held, release = hold(asana_server, 10, (11, a_ended))
    with TcpProxy(*server_address(database_url)) as proxy:
        a = start_sync(tmp_path, "a", asana_server, proxy.url(database_url),
                       listed("users", users), page_size=10)
        try:
            assert held.wait(timeout=60), "the first run never reached its second page"
            (a_row,) = wait_for(lambda: run_rows(engine), what="the first run's row")
            port = wait_for(lambda: lock_connection_port(engine, backend, a.pid, first),
                            what="the first run's lock connection")
            # the first run cannot connect again for now: a failover, say
            proxy.refuse(True)
            assert proxy.cut_port(port) == 1
            wait_for(lambda: free(engine, first), what="the server to free the lock")
            before = entries_seen(engine, a_row.id)
            b = start_sync(tmp_path, "b", asana_server, database_url, listed("users", users),
                           page_size=11)
            wait_for(lambda: len(run_rows(engine)) == 2, what="the second run's row")
            proxy.refuse(False)  # the first run gets a connection, but not its locks
            a_output, _ = a.communicate(timeout=60)
            a_ended.set()
            assert a.returncode == 4, a_output
            (error,) = one_line_and_no_traceback(a_output)
            assert "this run's lock connection was lost, and another run holds scope" in error
            b_output, _ = b.communicate(timeout=120)
            assert b.returncode == 0, b_output
        finally:
            release.set()
            a_ended.set()
            asana_server.before_answer = None
            if a.poll() is None:
                a.kill()
    one, two = run_rows(engine)
    assert (one.status, two.status) == ("failed", "succeeded")  # never `abandoned`: it lived
    assert "lock connection was lost" in one.error
    assert entries_seen(engine, one.id) == before  # it wrote nothing after the cut
    assert stored_rows(engine) == expected_rows(data)


@SERVERS
def test_a_dropped_lock_connection_is_had_again_and_the_run_goes_on(
    asana_server, database_url, engine, backend, tmp_path
):
    data = asana_server.dataset
    users = sorted(data.users)
    migrate.upgrade(engine)
    held, release = hold(asana_server, limit=10)
    with TcpProxy(*server_address(database_url)) as proxy:
        a = start_sync(tmp_path, "a", asana_server, proxy.url(database_url),
                       listed("users", users), page_size=10)
        try:
            assert held.wait(timeout=60)
            port = wait_for(lambda: lock_connection_port(engine, backend, a.pid,
                                                         Scope("user", users[0])),
                            what="the run's lock connection")
            assert proxy.cut_port(port) == 1
            time.sleep(0.5)
        finally:
            release.set()
        output, _ = a.communicate(timeout=120)
    asana_server.before_answer = None
    assert a.returncode == 0, output
    assert "Traceback" not in output
    assert "lost the connection to" in output
    assert [r.status for r in run_rows(engine)] == ["succeeded"]
    assert stored_rows(engine) == expected_rows(data)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_lost_mid_run_is_exit_5_in_one_line_and_the_rerun_is_exact(
    asana_server, database_url, engine, tmp_path
):
    data = asana_server.dataset
    users = sorted(data.users)
    migrate.upgrade(engine)
    held, release = hold(asana_server, limit=10)
    with TcpProxy(*server_address(database_url)) as proxy:
        a = start_sync(tmp_path, "a", asana_server, proxy.url(database_url),
                       listed("users", users), page_size=10)
        try:
            assert held.wait(timeout=60)
            wait_for(lambda: run_rows(engine), what="the run's row")
            proxy.refuse(True)
            assert proxy.cut() >= 1
        finally:
            release.set()
        output, _ = a.communicate(timeout=120)
    asana_server.before_answer = None
    assert a.returncode == 5, output
    (error,) = one_line_and_no_traceback(output)
    assert "error: the database postgresql+psycopg://postgres@127.0.0.1:" in error
    assert "failed during the run: connection lost" in error
    assert "INSERT" not in output and "SELECT" not in output and "parameters" not in output
    assert [r.status for r in run_rows(engine)] == ["running"]  # it could not say more
    b = start_sync(tmp_path, "b", asana_server, database_url, listed("users", users))
    b_output, _ = b.communicate(timeout=120)
    assert b.returncode == 0, b_output
    assert [r.status for r in run_rows(engine)] == ["abandoned", "succeeded"]
    assert stored_rows(engine) == expected_rows(data)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs: SQLite meets a full disk on it for real."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"cannot mount a tmpfs for the disk-full test: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_sqlite_on_a_full_disk_is_exit_5_in_one_line_and_the_rerun_after_is_exact(
    small_disk, tmp_path
):
    data = Dataset.generate(seed=5, entries=6000, users=8, projects=5, portfolios=1, tasks=40)
    url = f"sqlite:///{small_disk / 'asana.db'}"
    with AsanaSimulator(data, token=TOKEN) as server:
        users = sorted(data.users)
        a = start_sync(tmp_path, "a", server, url, listed("users", users), page_size=100)
        output, _ = a.communicate(timeout=120)
        assert a.returncode == 5, output
        (error,) = one_line_and_no_traceback(output)
        assert f"error: the database {url} failed during the run: the disk or a quota is full" \
            in error
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        b = start_sync(tmp_path, "b", server, url, listed("users", users), page_size=100)
        b_output, _ = b.communicate(timeout=120)
        assert b.returncode == 0, b_output
    engine = engines.make_engine(url)
    try:
        statuses = [r.status for r in run_rows(engine)]
        assert statuses[-1] == "succeeded" and runs.RUNNING not in statuses
        assert stored_rows(engine) == expected_rows(data)
    finally:
        engine.dispose()


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_a_killed_fetcher_process_is_one_line(asana_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'asana.db'}"
    users = sorted(asana_server.dataset.users)
    held, release = hold(asana_server, limit=10)
    a = start_sync(tmp_path, "a", asana_server, url, listed("users", users), page_size=10)
    try:
        assert held.wait(timeout=60)
        (fetcher,) = wait_for(lambda: children(a.pid), what="the fetcher process")
        os.kill(fetcher, signal.SIGKILL)
        output, _ = a.communicate(timeout=60)
    finally:
        release.set()
        asana_server.before_answer = None
    assert a.returncode == 1, output
    (error,) = one_line_and_no_traceback(output)
    assert "the fetcher process ended unexpectedly (exit code -9)" in error
    engine = engines.make_engine(url)
    try:
        assert [r.status for r in run_rows(engine)] == ["failed"]
    finally:
        engine.dispose()
