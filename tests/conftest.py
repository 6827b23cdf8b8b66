"""Shared fixtures: a simulated Asana over real HTTP, databases, instant retries."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.run import plan
from etl.config import AsanaSettings, Scope, Secret, Settings
from etl.store.engines import check_connection, make_engine
from etl.errors import EtlError
from etl.simulator import AsanaSimulator, Dataset
from tests.helpers import TOKEN, all_scopes

#: tests/recipes run on the real orchestrators, in venvs of their own: `./run-tests --recipes`
collect_ignore = ["recipes"]


@pytest.fixture(autouse=True)
def _etl_logger_as_found() -> Iterator[None]:
    """The "etl" logger as it was before the test: a command run in this process (a
    CliRunner test) sets its level, handlers and propagation, and `demo` quiets it to
    WARNING; left so, a later test on the same worker would lose the INFO lines it
    reads from caplog, or pass only when the workers happened to run it first."""
    logger = logging.getLogger("etl")
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


#: Seconds before midnight UTC within which a test that reads today's date waits for
#: the next day rather than start: the run it makes would take another day than it.
MIDNIGHT_MARGIN = 180


@pytest.fixture(autouse=True)
def _within_one_day(request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A test module whose `TODAY` is read from the clock (`TODAY_FROM_CLOCK`) had it
    when it was imported, which may be the day before the test runs: a suite that
    crosses midnight UTC then failed on windows a day apart. Such a test starts within
    one day, at least `MIDNIGHT_MARGIN` seconds before its end, with `TODAY` read now."""
    if not getattr(request.module, "TODAY_FROM_CLOCK", False):
        return
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    left = (midnight - now).total_seconds()
    if left < MIDNIGHT_MARGIN:
        time.sleep(left + 1)
    monkeypatch.setattr(request.module, "TODAY", dt.datetime.now(dt.UTC).date())


@pytest.fixture
def dataset() -> Dataset:
    """A small deterministic dataset (tests that need more build their own)."""
    return Dataset.generate(seed=3, entries=400, users=10, projects=6, portfolios=2, tasks=30)


@pytest.fixture
def asana_server(dataset: Dataset) -> Iterator[AsanaSimulator]:
    """The simulated Asana, serving `dataset` on 127.0.0.1 for the length of one test."""
    with AsanaSimulator(dataset, token=TOKEN) as server:
        yield server


#: Holds tests/processes/sitecustomize.py, which Python processes started by a test load.
PROCESS_FIXTURES = Path(__file__).resolve().parent / "processes"
#: The split threshold those processes use (see `_listings_split_only_where_asked`).
THRESHOLD_VARIABLE = "ASANA_ETL_TEST_MIN_SPLIT_LATENCY"


@pytest.fixture(autouse=True)
def _listings_split_only_where_asked(request: pytest.FixtureRequest,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run splits listings when requests are slow (`plan.MIN_SPLIT_LATENCY`); against
    the simulator in this busy process a request sometimes is, so that splits would come
    and go with the machine's load. Tests that split ask for it (`splitting`), and tests
    of the threshold itself for the real one (`split_as_shipped`).

    The same holds in the processes the test starts (an `asana-etl sync` of its own, a
    fetcher started by spawn): tests/processes/sitecustomize.py sets their threshold to
    this one, which it reads from the environment."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PROCESS_FIXTURES), *filter(None, [os.environ.get("PYTHONPATH")])]))
    if not {"splitting", "split_as_shipped"} & set(request.fixturenames):
        monkeypatch.setattr(plan, "MIN_SPLIT_LATENCY", math.inf)
        monkeypatch.setenv(THRESHOLD_VARIABLE, "inf")
    elif "split_as_shipped" in request.fixturenames:
        monkeypatch.delenv(THRESHOLD_VARIABLE, raising=False)


@pytest.fixture
def split_as_shipped() -> None:
    """`plan.MIN_SPLIT_LATENCY` as the code sets it."""


@pytest.fixture
def splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings split whenever fewer are open than the budget could feed, however fast
    the simulator answers (the rate limit then sets how many that is)."""
    monkeypatch.setattr(plan, "MIN_SPLIT_LATENCY", 0.0)
    monkeypatch.setenv(THRESHOLD_VARIABLE, "0")


class SleepRecorder:
    """Stands in for time.sleep: records each wait, never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


BACKENDS = ["sqlite", "postgresql", "mysql"]
SERVER_URLS = {
    "postgresql": os.environ.get(
        "ASANA_ETL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get(
        "ASANA_ETL_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A private, empty database on each backend: a SQLite file, a PostgreSQL schema or a
    MariaDB database, dropped afterwards. An unreachable server skips the test locally
    and fails it in CI (CI=true)."""
    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'asana.db'}"
        return
    with private_database(backend) as url:
        yield url


def server_engine(backend: str) -> sa.Engine:
    """An engine on the backend's server, or skip/fail when it cannot be reached."""
    url = SERVER_URLS[backend]
    try:
        engine = make_engine(url)
        check_connection(engine)
    except EtlError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{backend} is required in CI: {exc}")
        pytest.skip(f"{backend} unreachable: {exc}")
    return engine


@contextlib.contextmanager
def private_database(backend: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = server_engine(backend)
    url = sa.engine.make_url(SERVER_URLS[backend])
    if backend == "postgresql":
        ddl_create, ddl_drop = f"CREATE SCHEMA {name}", f"DROP SCHEMA {name} CASCADE"
        url = url.update_query_dict({"options": f"-csearch_path={name}"})
    else:
        ddl_create = f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ddl_drop = f"DROP DATABASE {name}"
        url = url.set(database=name).update_query_dict({"charset": "utf8mb4"})
    with admin.begin() as conn:
        conn.exec_driver_sql(ddl_create)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(ddl_drop)
        admin.dispose()


@pytest.fixture
def backend(database_url: str) -> str:
    return sa.engine.make_url(database_url).get_backend_name()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_settings(asana_server: AsanaSimulator, database_url: str) -> Callable[..., Settings]:
    def make(scopes: list[Scope] | None = None, token: str = TOKEN, **asana: Any) -> Settings:
        # the client-side rate limiter has tests of its own; elsewhere it stays out of the way
        asana.setdefault("requests_per_minute", 1_000_000)
        return Settings(
            asana=AsanaSettings(base_url=asana_server.base_url, token=Secret(token), **asana),
            database_url=database_url,
            scopes=tuple(scopes if scopes is not None else all_scopes(asana_server.dataset)),
            source="(test)",
        )

    return make


# --- the suite on several workers (pytest-xdist: ./run-tests runs `-n N --dist load`) ---

#: The tests that take longest, with their seconds on this 2-core machine run one at a
#: time (a name matches each of its parametrisations). On several workers they start
#: first, the longest first, so that none of them is left to end the run alone.
LONGEST = [
    ("test_migration_kills.py::test_sigkills_during_db_upgrade_then_db_upgrade_completes"
     "_the_schema[mysql]", 48),
    ("test_migration_kills.py::test_sigkills_during_db_upgrade_then_db_upgrade_completes"
     "_the_schema[sqlite]", 37),
    ("test_crash.py::test_ten_sigkills_then_reruns_leave_the_tables_equal_to_the_server", 39),
    ("test_quickstart.py::test_the_readme_quick_start_works_in_a_fresh_copy", 20),
    ("test_database_faults.py::test_a_database_lost_mid_run_is_exit_5", 19),
    ("test_log_order.py::test_no_line_is_lost_or_out_of_order_when_the_database_is_lost", 18),
    ("test_lock.py::test_two_first_syncs_on_a_new_sqlite_file", 17),
    ("test_terminal.py::test_a_sync_on_a_terminal_shows_every_log_line", 12),
    ("test_pipeline.py::test_five_thousand_entries_in_fifty_overlapping_scopes", 10),
    ("test_crash.py::test_a_killed_run_never_blocks_the_next_one_on_servers", 9),
    ("test_recipes.py::test_the_prefect_flow_runs_every_group", 7),
    ("test_crash.py::test_the_token_is_stored_nowhere", 7),
    ("test_lock.py::test_runs_over_scopes_that_share_entries", 6),
    ("test_crash.py::test_sigterm_rolls_back_the_page", 6),
    ("test_hostile_pages.py::test_a_byte_every_two_seconds", 6),
    ("test_database_faults.py::test_a_run_that_loses_its_lock_connection", 5),
    ("test_migrations.py::test_an_installed_wheel", 5),
]

#: Tests whose parametrisations share a fixture wider than a test, and so must run one
#: after the other in one process, as they do without xdist: test_backends' module-scoped
#: `bi_answers` (and test_dimensions' `answers`) holds each backend's answers for the next
#: backend's to be held against.
SHARED = ["test_backends.py::test_readme_bi_queries_answer_the_same_on_every_backend",
          "test_dimensions.py::test_readme_finance_queries_answer_the_same_on_every_backend"]


def _matching(nodeid: str, names: list[str]) -> str | None:
    name = nodeid.split("/")[-1]
    return next((prefix for prefix in names if name.startswith(prefix)), None)


def expected_seconds(nodeid: str) -> float:
    """How long a test is known to take (0: not one of the `LONGEST`)."""
    prefix = _matching(nodeid, [prefix for prefix, _ in LONGEST])
    return dict(LONGEST)[prefix] if prefix else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, a test that shares a fixture wider than a test must be in
    `SHARED` (run in one process, as tests/recipes are, any test may share one)."""
    if not (config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses")):
        return
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        wide = [name for name, defs in (info.name2fixturedefs.items() if info else ())
                if defs and defs[-1].scope in ("package", "module", "class")]
        if wide and not _matching(item.nodeid, SHARED):
            raise pytest.UsageError(
                f"{item.nodeid} shares {', '.join(wide)} with other tests: add it to SHARED "
                "in tests/conftest.py, so that they run in one process on xdist")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist load`, with the longest tests first (see `LongestFirst`)."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScheduling

    class LongestFirst(LoadScheduling):
        """Hands out the tests one at a time: the `LONGEST` first, the longest first, and
        the `SHARED` ones together.

        A worker runs a test once it has the next one (or is told there are none), so
        each worker holds the test it runs and one more, which waits for it. Behind a
        long test that one is short, and behind a short test it is the longest left:
        the long tests start as soon as a worker is free, and no long test waits for
        another."""

        def schedule(self) -> None:
            assert self.collection_is_completed
            if self.collection is None:
                if not self._check_nodes_have_same_collection():
                    self.log("**Different tests collected, aborting run**")
                    return
                self.collection = next(iter(self.node2collection.values()))
                self.seconds = [expected_seconds(nodeid) for nodeid in self.collection]
                self.pending[:] = sorted(range(len(self.collection)),
                                         key=lambda i: -self.seconds[i])
            for node in self.nodes:
                self.check_schedule(node)

        def check_schedule(self, node: Any, duration: float = 0) -> None:
            if node.shutting_down:
                return
            queue = self.node2pending[node]
            while len(queue) < 2 and self.pending:
                behind_long = bool(queue) and self.seconds[queue[0]] > 0
                index = next((i for i in self.pending if (self.seconds[i] > 0) != behind_long),
                             self.pending[0])
                shared = _matching(self.collection[index], SHARED)
                unit = [i for i in self.pending
                        if shared and _matching(self.collection[i], SHARED) == shared] or [index]
                for i in unit:
                    self.pending.remove(i)
                queue.extend(unit)
                node.send_runtest_some(unit)
            if not self.pending:
                node.shutdown()  # it runs what it holds, and then stops

    return LongestFirst(config, log)
