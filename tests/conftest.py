"""Shared fixtures: a simulated Asana over real HTTP, databases, instant retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config import AsanaSettings, Scope, Secret, Settings
from etl.db import make_engine
from etl.simulator import AsanaSimulator, Dataset
from tests.helpers import TOKEN, all_scopes


@pytest.fixture
def dataset() -> Dataset:
    """A small deterministic dataset (tests that need more build their own)."""
    return Dataset.generate(seed=3, entries=400, users=10, projects=6, portfolios=2, tasks=30)


@pytest.fixture
def asana_server(dataset: Dataset) -> Iterator[AsanaSimulator]:
    """The simulated Asana, serving `dataset` on 127.0.0.1 for the length of one test."""
    with AsanaSimulator(dataset, token=TOKEN) as server:
        yield server


class SleepRecorder:
    """Stands in for time.sleep: records each wait, never sleeps."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'asana.db'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_settings(asana_server: AsanaSimulator, database_url: str) -> Callable[..., Settings]:
    def make(scopes: list[Scope] | None = None, token: str = TOKEN, **asana: Any) -> Settings:
        return Settings(
            asana=AsanaSettings(base_url=asana_server.base_url, token=Secret(token), **asana),
            database_url=database_url,
            scopes=tuple(scopes if scopes is not None else all_scopes(asana_server.dataset)),
            source="(test)",
        )

    return make
