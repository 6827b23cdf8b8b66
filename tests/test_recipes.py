"""Fast checks of the orchestration recipes in docs/recipes, in the default `./run-tests`.

The recipes run for real on Airflow, Dagster and Prefect in the recipes leg
(`./run-tests --recipes`, tests/recipes/, each orchestrator in a venv of its own; CI runs
it after this suite): every DAG, asset and flow against the simulated Asana, the tables
exact afterwards. What stays here is what those runs cannot show, or shows only minutes
later and in another venv:

- static checks: every recipe is valid Python and shown in the guide, the guide names the
  orchestrator versions the recipes leg pins, and no orchestrator is a dependency or an
  extra of asana-etl itself;
- the Airflow recipe's own bash (`summarised`) when a run fails, with stand-ins for the
  few Airflow names the recipe imports (a BashOperator runs its command in bash as
  Airflow does, both streams in one, the last line kept): a group whose scope failed
  (exit 1) or that cannot run (exit 2) ends its output with its summary and exits as
  asana-etl did. The recipes leg shows such a group failing the DAG run on the real
  Airflow, but with its retries set to 0 (as written they wait ten minutes each), and
  reads XComs, which a failed task has none of, not its log's last line.

Everything else the stand-ins used to check (the fan-out and its report, the monthly
backfill, the Dagster assets, the Prefect flow) runs for real in the recipes leg only.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TOKEN

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes"
ASANA_ETL = str(Path(sys.executable).with_name("asana-etl"))


ORCHESTRATORS = ("apache-airflow", "dagster", "prefect")


def test_every_recipe_is_valid_python_and_the_guide_shows_each():
    guide = (ROOT / "docs" / "orchestration.md").read_text(encoding="utf-8")
    recipes = sorted(RECIPES.glob("*.py"))
    assert len(recipes) == 5
    for recipe in recipes:
        ast.parse(recipe.read_text(encoding="utf-8"), filename=str(recipe))
        assert f"recipes/{recipe.name}" in guide
    assert "recipes/Dockerfile" in guide


def test_the_guide_names_the_versions_the_recipes_leg_tests():
    guide = (ROOT / "docs" / "orchestration.md").read_text(encoding="utf-8")
    pins = [line.split("==") for file in (ROOT / "tests" / "recipes" / "requirements").glob("*.in")
            for line in file.read_text(encoding="utf-8").splitlines()
            if "==" in line and not line.startswith("#")]
    assert {name for name, _ in pins} >= set(ORCHESTRATORS)
    for name, version in pins:
        assert f"{name} {version}" in guide


def test_no_orchestrator_is_a_dependency_or_an_extra_of_asana_etl():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project["optional-dependencies"].values() for r in extra)]
    names = {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}
    assert not {n for n in names if n.startswith(ORCHESTRATORS)}


@pytest.fixture
def groups(asana_server, tmp_path, monkeypatch) -> Path:
    """Two group configs over disjoint halves of the users, one SQLite database, the
    token in a file; and the whole config (every user) for the backfills."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)
    database = f"sqlite:///{tmp_path / 'asana.db'}"
    users = sorted(asana_server.dataset.users)
    folder = tmp_path / "groups"
    folder.mkdir()

    def config(path: Path, gids: list[str]) -> None:
        listed = ", ".join(f'"{g}"' for g in gids)
        path.write_text(
            f'[asana]\nbase_url = "{asana_server.base_url}"\ntoken_file = "{token}"\n'
            f"requests_per_minute = 750\n[database]\nurl = \"{database}\"\n"
            f"[scopes]\nusers = [{listed}]\n", encoding="utf-8")

    config(folder / "team-a.toml", users[: len(users) // 2])
    config(folder / "team-b.toml", users[len(users) // 2:])
    config(tmp_path / "config.toml", users)
    monkeypatch.setenv("ASANA_ETL_BIN", ASANA_ETL)
    monkeypatch.setenv("ASANA_ETL_GROUPS", str(folder))
    monkeypatch.setenv("ASANA_ETL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("ASANA_ACCESS_TOKEN", raising=False)
    return folder


def load_recipe(name: str, monkeypatch, stand_ins: dict[str, types.ModuleType]):
    for module, value in stand_ins.items():
        monkeypatch.setitem(sys.modules, module, value)
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), RECIPES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module(name: str, **names: Any) -> types.ModuleType:
    value = types.ModuleType(name)
    value.__dict__.update(names)
    return value


# --- Airflow ------------------------------------------------------------------------------

class DAG:
    current: DAG | None = None

    def __init__(self, dag_id: str, **kwargs: Any) -> None:
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, []

    def __enter__(self) -> DAG:
        DAG.current = self
        return self

    def __exit__(self, *exc: Any) -> None:
        DAG.current = None

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]


class Operator:
    def __init__(self, task_id: str, **kwargs: Any) -> None:
        self.task_id, self.kwargs, self.upstream = task_id, kwargs, []
        self.dag = DAG.current
        self.dag.tasks.append(self)

    def __rrshift__(self, other: list[Operator]) -> Operator:
        self.upstream.extend(other)
        return self


class BashOperator(Operator):
    def run(self, env: dict[str, str] | None = None) -> tuple[int, str]:
        """The command in bash as Airflow runs it: the task's env on top of the worker's
        with `append_env`, stdout and stderr in one stream; the last line is the XCom."""
        environment = dict(os.environ)
        if self.kwargs.get("env"):
            environment = {**environment, **(env or self.kwargs["env"])}
        done = subprocess.run(["bash", "-c", self.kwargs["bash_command"]], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=120)
        lines = done.stdout.strip().splitlines()
        return done.returncode, lines[-1] if lines else ""


def airflow_modules() -> dict[str, types.ModuleType]:
    def datetime(year, month, day, tz="UTC"):
        return dt.datetime(year, month, day, tzinfo=dt.timezone.utc)

    return {
        "pendulum": module("pendulum", datetime=datetime, duration=dt.timedelta),
        "airflow": module("airflow", DAG=DAG),
        "airflow.timetables": module("airflow.timetables"),
        "airflow.timetables.interval": module(
            "airflow.timetables.interval",
            CronDataIntervalTimetable=lambda cron, timezone: ("interval", cron, timezone)),
        "airflow.operators": module("airflow.operators"),
        "airflow.operators.bash": module("airflow.operators.bash", BashOperator=BashOperator),
        "airflow.operators.python": module("airflow.operators.python", PythonOperator=Operator),
    }


def test_an_airflow_group_that_fails_ends_its_task_log_with_its_summary_and_exit_code(
    asana_server, groups, monkeypatch
):
    """The recipe's own bash (`summarised`): however the run ends, the task's last output
    line is its summary (in the task log: Airflow pushes no XCom for a failed task) and
    the task exits as asana-etl did, so that Airflow retries, skips or fails it."""
    config = groups / "team-a.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "users = [", 'users = ["1999999999999999", '), encoding="utf-8")  # no such user
    (groups / "team-c.toml").write_text("[asana]\nnot_a_key = 1\n", encoding="utf-8")
    recipe = load_recipe("airflow_asana_etl.py", monkeypatch, airflow_modules())
    tasks = {t.task_id: t for t in recipe.nightly.tasks if isinstance(t, BashOperator)}
    assert sorted(tasks) == ["sync_team-a", "sync_team-b", "sync_team-c"]
    assert all(t.kwargs["skip_on_exit_code"] == 4 for t in tasks.values())

    code, line = tasks["sync_team-a"].run()  # a scope failed, the others are loaded
    summary = json.loads(line)
    assert (code, summary["exit_code"], summary["status"]) == (1, 1, "partial")
    assert [s["scope"] for s in summary["scopes"] if s["status"] == "failed"] == [
        "user:1999999999999999"]
    assert summary["inserted"] > 0

    code, line = tasks["sync_team-c"].run()  # a config that cannot be used
    summary = json.loads(line)
    assert (code, summary["exit_code"], summary["run_id"]) == (2, 2, None)
    assert "not_a_key" in summary["error"]
