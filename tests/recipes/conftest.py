"""The recipes leg: docs/recipes on the real orchestrators, against the simulated Asana.

Run by `./run-tests --recipes`, each test_<orchestrator>.py with the pytest of its own
venv (.venv-recipes/<orchestrator>); the default `./run-tests` does not collect this
folder (tests/conftest.py `collect_ignore`). The fixtures of tests/conftest.py serve
here too: `asana_server` is the simulator on loopback, over real HTTP.
"""

from __future__ import annotations

import contextlib
import collections
import datetime as dt
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from etl.store import engines
from etl.config import Scope
from etl.store.lock import scope_locks
from etl.simulator import AsanaSimulator, Dataset
from tests.helpers import TOKEN, expected_rows, stored_rows

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "docs" / "recipes"
#: this venv's asana-etl, installed from the checkout by tests/recipes/run
ASANA_ETL = Path(sys.executable).with_name("asana-etl")


@dataclass
class Setup:
    """Group configs over disjoint shares of the simulator's users, one SQLite database
    for all of them, and `config` (every user) for the backfills."""

    folder: Path  # the group configs, <group>.toml
    config: Path
    database: Path
    token_file: Path
    data: Dataset

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"

    def stored(self) -> dict[str, dict]:
        """The live rows of `time_tracking_entries`, by gid."""
        engine = engines.make_engine(self.database_url)
        try:
            return stored_rows(engine)
        finally:
            engine.dispose()

    def exact(self) -> None:
        """The table holds exactly what the simulator serves, field by field."""
        assert self.stored() == expected_rows(self.data)

    @contextlib.contextmanager
    def holding(self, gid: str) -> Iterator[None]:
        """Another run holds the scope of user `gid` for the block."""
        engine = engines.make_engine(self.database_url)
        try:
            with scope_locks(engine, [Scope("user", gid)], "sync"):
                yield
        finally:
            engine.dispose()

    def first_user(self, group: str) -> str:
        """A user whose scope is in `group`'s config."""
        text = (self.folder / f"{group}.toml").read_text(encoding="utf-8")
        return next(g for g in sorted(self.data.users) if f'"{g}"' in text)


def write_config(path: Path, server: AsanaSimulator, database: Path, gids: list[str],
                 token_file: Path | None) -> None:
    listed = ", ".join(f'"{g}"' for g in gids)
    token = f'token_file = "{token_file}"\n' if token_file else ""
    path.write_text(
        f'[asana]\nbase_url = "{server.base_url}"\n{token}requests_per_minute = 750\n'
        f'[database]\nurl = "sqlite:///{database}"\n[scopes]\nusers = [{listed}]\n',
        encoding="utf-8")


def make_setup(server: AsanaSimulator, tmp_path: Path, groups: list[str],
               token_in_file: bool = True) -> Setup:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    database = tmp_path / "asana.db"
    users = sorted(server.dataset.users)
    folder = tmp_path / "groups"
    folder.mkdir()
    for i, group in enumerate(groups):
        write_config(folder / f"{group}.toml", server, database, users[i::len(groups)],
                     token_file if token_in_file else None)
    write_config(tmp_path / "config.toml", server, database, users, token_file)
    return Setup(folder, tmp_path / "config.toml", database, token_file, server.dataset)


@pytest.fixture
def setup(asana_server, tmp_path, monkeypatch) -> Setup:
    """Two groups, `team-a` and `team-b`, and the environment the recipes read."""
    assert ASANA_ETL.exists(), f"{ASANA_ETL} is missing: tests/recipes/run installs it"
    made = make_setup(asana_server, tmp_path, ["team-a", "team-b"])
    monkeypatch.setenv("ASANA_ETL_BIN", str(ASANA_ETL))
    monkeypatch.setenv("ASANA_ETL_GROUPS", str(made.folder))
    monkeypatch.setenv("ASANA_ETL_CONFIG", str(made.config))
    monkeypatch.delenv("ASANA_ACCESS_TOKEN", raising=False)
    return made


def load_recipe(name: str) -> ModuleType:
    """Import docs/recipes/`name` as a module of its own, as the orchestrator would; a
    deprecation warning of the orchestrator while doing so fails the test (the recipes
    are what users copy: they should not use names the orchestrator is retiring)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name.removesuffix('.py')}",
                                                  RECIPES / name)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", PendingDeprecationWarning)
        warnings.simplefilter("error", FutureWarning)  # Airflow's DeprecatedImportWarning
        spec.loader.exec_module(module)
    return module


def entries_in(data: Dataset, since: dt.date, until: dt.date) -> int:
    return sum(since <= e.entered_on <= until for e in data.entries.values())


def busiest_month(data: Dataset) -> dt.date:
    months = collections.Counter(e.entered_on.replace(day=1) for e in data.entries.values())
    return months.most_common(1)[0][0]


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def environment(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: this one's, without a token, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "ASANA_ACCESS_TOKEN"}
    env.update(extra)
    return env
