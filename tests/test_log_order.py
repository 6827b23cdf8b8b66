"""A run's log lines come in the order of their timestamps, the fetcher process's among
the run's own: piped as text, as JSON, and on a terminal (rendered by pyte); and none
of them is lost when the run is interrupted or its fetcher killed.

Each test runs a real `asana-etl sync` at debug level against the simulator, with
faults that make the fetcher log from its worker threads while the run's process logs
from its own: 503s and 429s it retries, entries it rejects, listings it splits (the
`splitting` fixture), a line a page; and once, the database held by another writer for
a second, so that the run's process waits inside a transaction while the fetcher goes
on (etl.logorder says how the order is kept).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.simulator import AsanaSimulator, Dataset
from etl.store import migrate
from tests.helpers import TOKEN, listed
from tests.proxy import TcpProxy
from tests.test_crash import children
from tests.test_terminal import Emulator, run_on_terminal, terminal_env

TIMEOUT = 120
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (DEBUG|INFO|WARNING|ERROR) "
                       r"([\w.]+): (.*)")
#: The loggers of the fetcher process's lines, and of the run's own process.
FETCHER_LOGGERS = {"etl.run.listings", "etl.asana.client", "etl.asana.extract"}
RUN_LOGGERS = {"etl.run.pipeline", "etl.run.completion", "etl.run.record", "etl"}
#: Every how many requests the simulator answers 503, and 429, and how often at most.
EVERY_503, TIMES_503 = 29, 12
EVERY_429, TIMES_429 = 71, 4
#: The request after which another writer holds the database for `HOLD_SECONDS`.
HOLD_AFTER, HOLD_SECONDS = 150, 1.0


@pytest.fixture
def dataset() -> Dataset:
    data = Dataset.generate(seed=17, entries=2500, users=3, projects=4, portfolios=1,
                            tasks=30)
    for gid in sorted(data.entries)[::300]:  # the API sending a mistyped field
        data.edit_entry(gid, duration_minutes="ninety")
    return data


class _Faulted:
    """A fault's `when`: every `every`-th request asked about; keeps what it answered, so
    that `retried` can tell when a faulted request came again (its retry was logged
    before it was sent)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.asked = 0
        self.keys: set[tuple] = set()

    def __call__(self, path: str, params: dict[str, str]) -> bool:
        self.asked += 1
        if self.asked % self.every:
            return False
        self.keys.add(_key(path, params))
        return True


def _key(path: str, params: dict[str, str]) -> tuple:
    return path, tuple(sorted(params.items()))


class Noisy:
    """The simulator with the faults above, and what happens at chosen requests."""

    def __init__(self, server: AsanaSimulator) -> None:
        self.server = server
        self.faulted = [_Faulted(EVERY_503), _Faulted(EVERY_429)]
        server.add_fault(503, times=TIMES_503, when=self.faulted[0])
        server.add_fault(429, times=TIMES_429, retry_after=0.0, when=self.faulted[1])
        self.answered = 0
        self.retried = 0  # faulted requests asked again: their retry lines were logged
        self.on_retry: dict[int, Callable[[], None]] = {}  # retried → what to do then
        self.hold: Path | None = None
        self.lock = threading.Lock()
        server.before_answer = self._before_answer

    def hold_database(self, path: Path) -> None:
        """After `HOLD_AFTER` requests, another writer holds the SQLite database for
        `HOLD_SECONDS`: the run's next transaction waits for it, inside."""
        self.hold = path

    def _before_answer(self, path: str, params: dict[str, str]) -> None:
        with self.lock:
            self.answered += 1
            if self.answered == HOLD_AFTER and self.hold is not None:
                threading.Thread(target=_hold, args=(self.hold,), daemon=True).start()
            key = _key(path, params)
            for faulted in self.faulted:
                if key in faulted.keys:
                    faulted.keys.discard(key)
                    self.retried += 1
                    action = self.on_retry.pop(self.retried, None)
                    if action is not None:
                        action()

    def retries(self) -> int:
        """Faults answered: each one a line of the fetcher's ("retrying after …")."""
        return self.server.count(503) + self.server.count(429)


def _hold(path: Path) -> None:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        time.sleep(HOLD_SECONDS)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@pytest.fixture
def noisy(asana_server, splitting) -> Noisy:
    return Noisy(asana_server)


@pytest.fixture
def sync_command(tmp_path, asana_server):
    """command(*options, database=None) -> argv and environment of an `asana-etl sync` at
    debug level over every user and the workspace, into `database` (a URL), else
    tmp_path/asana.db."""
    data = asana_server.dataset
    config = tmp_path / "config.toml"
    config.write_text(
        f'[asana]\nbase_url = "{asana_server.base_url}"\npage_size = 10\n'
        f"requests_per_minute = 1000000\nconcurrency = 8\nmax_retries = 6\n"
        f"backoff_max_seconds = 0.01\n[scopes]\n{listed('users', list(data.users))}\n"
        f'workspace = "{data.workspace_gid}"\n', encoding="utf-8")

    def command(*options: str, database: str | None = None) -> tuple[list[str], dict[str, str]]:
        env = terminal_env(ASANA_ACCESS_TOKEN=TOKEN, ASANA_ETL_DATABASE_URL=database
                           or f"sqlite:///{tmp_path / 'asana.db'}")
        return [sys.executable, "-m", "etl", "--config", str(config), "--log-level", "debug",
                *options, "sync"], env

    return command


def _text_lines(stderr: str) -> list[re.Match]:
    """The log lines of text stderr (a line that begins with no time goes on the one
    above: a traceback)."""
    lines = stderr.splitlines()
    matches = [m for m in map(TIMESTAMP.match, lines) if m]
    assert lines == [] or TIMESTAMP.match(lines[0]), lines[0]
    return matches


def _assert_in_order(stamps: list, lines: list[str]) -> None:
    late = [f"{lines[i - 1]}\n  then\n{lines[i]}" for i in range(1, len(stamps))
            if stamps[i] < stamps[i - 1]]
    assert not late, f"{len(late)} lines out of order, the first:\n{late[0]}"


def _assert_the_fetcher_spoke(names: list[str], messages: list[str], noisy: Noisy,
                              rejected: int) -> None:
    """The fetcher's lines are there, every one: each retry, each rejected entry; and
    the run's own among them."""
    fetched = [m for n, m in zip(names, messages) if n in FETCHER_LOGGERS]
    assert sum(m.startswith("retrying after ") for m in fetched) == noisy.retries() > 0
    assert sum(": rejected entry " in m for m in fetched) == rejected > 0
    assert any(" split into " in m for m in fetched)
    assert sum(re.search(r": page \d+, \d+ entries", m) is not None for m in fetched) > 100
    assert any(n in RUN_LOGGERS for n in names)


def _rejected(summary: str) -> int:
    return int(re.search(r"(\d+) rejected", summary)[1])


@pytest.mark.slow
def test_piped_text_lines_come_in_the_order_of_their_times(sync_command, noisy, tmp_path):
    noisy.hold_database(tmp_path / "asana.db")
    argv, env = sync_command()
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = _text_lines(done.stderr)
    assert len(lines) == len(done.stderr.splitlines())  # no traceback
    _assert_in_order([m[1] for m in lines], [m[0] for m in lines])
    _assert_the_fetcher_spoke([m[3] for m in lines], [m[4] for m in lines], noisy,
                              _rejected(done.stdout))


@pytest.mark.slow
def test_json_lines_come_in_the_order_of_their_times(sync_command, noisy, tmp_path):
    noisy.hold_database(tmp_path / "asana.db")
    argv, env = sync_command("--log-format", "json")
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    _assert_in_order([dt.datetime.fromisoformat(line["time"]) for line in lines],
                     done.stderr.splitlines())
    _assert_the_fetcher_spoke([line["logger"] for line in lines],
                              [line["message"] for line in lines], noisy,
                              json.loads(done.stdout.splitlines()[-1])["rejected"])


@pytest.mark.slow
def test_lines_on_a_terminal_come_in_the_order_of_their_times(sync_command, noisy, tmp_path):
    noisy.hold_database(tmp_path / "asana.db")
    argv, env = sync_command()
    seen = Emulator(200, 30)
    assert run_on_terminal(argv, env, tmp_path, seen) == 0
    shown = seen.lines()
    assert seen.titles  # the progress was drawn while the lines came
    matches = [m for m in map(TIMESTAMP.match, shown) if m]
    _assert_in_order([m[1] for m in matches], [m[0] for m in matches])
    summary = next(line for line in shown if line.startswith("sync succeeded: "))
    _assert_the_fetcher_spoke([m[3] for m in matches], [m[4] for m in matches], noisy,
                              _rejected(summary))


def _interrupt(process: subprocess.Popen, stop: str) -> None:
    if stop == "SIGINT":
        os.killpg(process.pid, signal.SIGINT)  # the whole group, as Ctrl-C does
    else:
        process.send_signal(signal.SIGTERM)  # the run's process, as `kill` does


def _kill_fetcher(process: subprocess.Popen) -> None:
    for pid in children(process.pid):
        os.kill(pid, signal.SIGKILL)


def _stopped(process: subprocess.Popen, noisy: Noisy) -> tuple[str, str]:
    """The last line of `process`'s stderr (the run's last word, after every log line)
    and all of it, once it is stopped as the fetcher logged three retries (it logs each
    before it asks again): the log lines are in order, those three among them."""
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert noisy.retried >= 3
    *logged, error = stderr.splitlines()
    lines = _text_lines("\n".join(logged))
    _assert_in_order([m[1] for m in lines], [m[0] for m in lines])
    retries = [m for m in lines if m[3] in FETCHER_LOGGERS and m[4].startswith("retrying after ")]
    assert len(retries) >= 3
    return error, stderr


def _start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT", "fetcher SIGKILL"])
def test_no_line_is_lost_or_out_of_order_when_the_run_is_stopped(stop, sync_command, noisy,
                                                                  tmp_path):
    process = _start(*sync_command(), tmp_path)
    if stop == "fetcher SIGKILL":
        noisy.on_retry[3] = lambda: _kill_fetcher(process)
    else:
        noisy.on_retry[3] = lambda: _interrupt(process, stop)
    error, stderr = _stopped(process, noisy)
    if stop == "fetcher SIGKILL":
        assert process.returncode == 1, stderr[-3000:]
        assert error == "error: the fetcher process ended unexpectedly (exit code -9)"
    else:
        assert process.returncode == 128 + getattr(signal, stop), stderr[-3000:]
        assert error == (f"error: interrupted by {stop}: stopped between two batches, nothing "
                         "half-written; a run in progress is recorded as failed")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_no_line_is_lost_or_out_of_order_when_the_database_is_lost(sync_command, noisy,
                                                                    database_url, engine,
                                                                    tmp_path):
    migrate.upgrade(engine)  # the run has begun when the retries come
    url = sa.make_url(database_url)
    with TcpProxy(url.host, url.port) as proxy:
        process = _start(*sync_command(database=proxy.url(database_url)), tmp_path)

        def lose_the_database() -> None:
            proxy.refuse(True)
            proxy.cut()

        noisy.on_retry[3] = lose_the_database
        error, stderr = _stopped(process, noisy)
    assert process.returncode == 5, stderr[-3000:]
    assert error.startswith("error: the database ") and "failed during the run" in error
