"""Shared fixtures: a simulated Asana over real HTTP, databases, instant retries."""

from __future__ import annotations

import contextlib
import math
import os
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


@pytest.fixture
def dataset() -> Dataset:
    """A small deterministic dataset (tests that need more build their own)."""
    return Dataset.generate(seed=3, entries=400, users=10, projects=6, portfolios=2, tasks=30)


@pytest.fixture
def asana_server(dataset: Dataset) -> Iterator[AsanaSimulator]:
    """The simulated Asana, serving `dataset` on 127.0.0.1 for the length of one test."""
    with AsanaSimulator(dataset, token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _listings_split_only_where_asked(request: pytest.FixtureRequest,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run splits listings when requests are slow (`plan.MIN_SPLIT_LATENCY`); against
    the simulator in this busy process a request sometimes is, so that splits would come
    and go with the machine's load. Tests that split ask for it (`splitting`), and tests
    of the threshold itself for the real one (`split_as_shipped`)."""
    if not {"splitting", "split_as_shipped"} & set(request.fixturenames):
        monkeypatch.setattr(plan, "MIN_SPLIT_LATENCY", math.inf)


@pytest.fixture
def split_as_shipped() -> None:
    """`plan.MIN_SPLIT_LATENCY` as the code sets it."""


@pytest.fixture
def splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings split whenever fewer are open than the budget could feed, however fast
    the simulator answers (the rate limit then sets how many that is)."""
    monkeypatch.setattr(plan, "MIN_SPLIT_LATENCY", 0.0)


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
