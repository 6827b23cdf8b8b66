"""The orchestration recipes in docs/recipes run as written, against the simulated Asana.

No orchestrator is installed here: each test puts in `sys.modules` a stand-in for the
few names a recipe imports from Airflow, Dagster or Prefect, each doing what the real one
does with what the recipe gives it (a BashOperator runs its command in bash and pushes its
last output line; a Dagster asset is called with a context; a Prefect task is called).
What is exercised is the recipes' own code: their commands, configs, exit codes and the
summaries they read.
"""

from __future__ import annotations

import ast
import collections
import datetime as dt
import importlib.util
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from etl.config import Scope
from etl.store.lock import scope_locks
from etl.store import engines
from tests.helpers import TOKEN

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes"
ASANA_ETL = str(Path(sys.executable).with_name("asana-etl"))


def test_every_recipe_is_valid_python_and_the_guide_shows_each():
    guide = (ROOT / "docs" / "orchestration.md").read_text(encoding="utf-8")
    recipes = sorted(RECIPES.glob("*.py"))
    assert len(recipes) == 4
    for recipe in recipes:
        ast.parse(recipe.read_text(encoding="utf-8"), filename=str(recipe))
        assert f"recipes/{recipe.name}" in guide
    assert "recipes/Dockerfile" in guide


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


def entries_in(data, since: dt.date, until: dt.date) -> int:
    return sum(since <= e.entered_on <= until for e in data.entries.values())


def busiest_month(data) -> dt.date:
    months = collections.Counter(e.entered_on.replace(day=1) for e in data.entries.values())
    return months.most_common(1)[0][0]


def next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


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


def test_the_airflow_dag_fans_out_one_task_per_group_and_reports_their_summaries(
    asana_server, groups, monkeypatch
):
    recipe = load_recipe("airflow_asana_etl.py", monkeypatch, airflow_modules())
    nightly = recipe.nightly
    syncs = [t for t in nightly.tasks if isinstance(t, BashOperator)]
    assert [t.task_id for t in syncs] == ["sync_team-a", "sync_team-b"]
    assert all(t.kwargs["skip_on_exit_code"] == 4 for t in syncs)
    xcoms = {}
    for task in syncs:
        code, xcoms[task.task_id] = task.run()
        assert code == 0, xcoms[task.task_id]
    report = next(t for t in nightly.tasks if t.task_id == "report")
    assert report.upstream == syncs and report.kwargs["trigger_rule"] == "all_done"

    class TaskInstance:
        def xcom_pull(self, task_ids):
            return [xcoms.get(t) for t in task_ids]

    totals = report.kwargs["python_callable"](ti=TaskInstance(), dag=nightly)
    entries = len(asana_server.dataset.entries)
    assert totals == {"entries_seen": entries, "inserted": entries, "updated": 0,
                      "deleted": 0, "rejected": 0}

    # a group that cannot run still ends its output with a summary, and its exit code
    (groups / "team-c.toml").write_text("[asana]\nnot_a_key = 1\n", encoding="utf-8")
    recipe = load_recipe("airflow_asana_etl.py", monkeypatch, airflow_modules())
    broken = next(t for t in recipe.nightly.tasks if t.task_id == "sync_team-c")
    code, line = broken.run()
    assert code == 2
    assert json.loads(line)["exit_code"] == 2


def test_the_airflow_backfill_reads_one_month_per_partition_and_reruns_harmlessly(
    asana_server, groups, monkeypatch
):
    recipe = load_recipe("airflow_asana_etl.py", monkeypatch, airflow_modules())
    (task,) = recipe.backfill.tasks
    assert recipe.backfill.kwargs["max_active_runs"] == 1
    assert recipe.backfill.kwargs["schedule"] == ("interval", "0 0 1 * *", "UTC")
    assert task.kwargs["env"] == {"SINCE": "{{ data_interval_start | ds }}",
                                  "UNTIL": "{{ macros.ds_add(data_interval_end | ds, -1) }}"}
    data = asana_server.dataset
    month = busiest_month(data)
    last = next_month(month) - dt.timedelta(days=1)
    # what Airflow renders for the partition [month, next month)
    rendered = {"SINCE": month.isoformat(), "UNTIL": last.isoformat()}
    for attempt in range(2):  # a cleared partition, run again, changes nothing
        code, line = task.run(rendered)
        assert code == 0, line
        summary = json.loads(line)
        assert summary["command"] == "backfill"
        assert {s["window"]["since"] for s in summary["scopes"]} == {month.isoformat()}
        assert {s["window"]["until"] for s in summary["scopes"]} == {last.isoformat()}
        expected = entries_in(data, month, last)
        assert summary["entries_seen"] == expected
        assert (summary["inserted"], summary["unchanged"]) == ((expected, 0) if attempt == 0
                                                               else (0, expected))


# --- Dagster ------------------------------------------------------------------------------

class Failure(Exception):
    def __init__(self, description: str, metadata: dict) -> None:
        super().__init__(description)
        self.metadata = metadata


class RetryRequested(Exception):
    def __init__(self, max_retries: int = 1, seconds_to_wait: float = 0) -> None:
        super().__init__(max_retries, seconds_to_wait)


def dagster_module() -> types.ModuleType:
    def asset(**kwargs):
        return lambda function: function

    return module(
        "dagster", asset=asset, Failure=Failure, RetryRequested=RetryRequested,
        MaterializeResult=lambda metadata: types.SimpleNamespace(metadata=metadata),
        MetadataValue=types.SimpleNamespace(float=float),
        RetryPolicy=lambda **kwargs: kwargs, Backoff=types.SimpleNamespace(EXPONENTIAL="exp"),
        AssetExecutionContext=object, MonthlyPartitionsDefinition=lambda **kwargs: kwargs,
        ScheduleDefinition=lambda **kwargs: kwargs, define_asset_job=lambda *a, **k: (a, k),
        Definitions=lambda **kwargs: kwargs,
    )


def test_the_dagster_assets_report_their_counts_and_retry_a_held_scope(
    asana_server, groups, monkeypatch, tmp_path
):
    recipe = load_recipe("dagster_asana_etl.py", monkeypatch, {"dagster": dagster_module()})
    data = asana_server.dataset
    entries = len(data.entries)
    first = recipe.time_tracking_entries(types.SimpleNamespace())
    assert (first.metadata["status"], first.metadata["inserted"]) == ("succeeded", entries)
    # the next night reads the last RECENT_DAYS days only (the full read is a week away)
    today = dt.datetime.now(dt.timezone.utc).date()
    data.add_entry(next(iter(data.tasks)), sorted(data.users)[0], 30, today)
    recent = entries_in(data, today - dt.timedelta(days=recipe.RECENT_DAYS - 1), dt.date.max)
    again = recipe.time_tracking_entries(types.SimpleNamespace())
    assert (again.metadata["inserted"], again.metadata["updated"],
            again.metadata["unchanged"]) == (1, 0, recent - 1)

    month = busiest_month(data)
    window = types.SimpleNamespace(
        start=dt.datetime.combine(month, dt.time(), dt.timezone.utc),
        end=dt.datetime.combine(next_month(month), dt.time(), dt.timezone.utc))
    context = types.SimpleNamespace(partition_time_window=window)
    partition = recipe.time_tracking_entries_by_month(context)
    in_month = entries_in(data, month, next_month(month) - dt.timedelta(days=1))
    assert (partition.metadata["unchanged"], partition.metadata["inserted"]) == (in_month, 0)

    # another run holds a scope: the step asks to be retried later, it does not fail
    engine = engines.make_engine(f"sqlite:///{tmp_path / 'asana.db'}")
    try:
        with scope_locks(engine, [Scope("user", sorted(data.users)[0])], "sync"):
            with pytest.raises(RetryRequested):
                recipe.time_tracking_entries_by_month(context)
    finally:
        engine.dispose()


def test_a_dagster_run_with_a_failed_scope_is_a_failure_with_the_counts(
    asana_server, groups, monkeypatch
):
    recipe = load_recipe("dagster_asana_etl.py", monkeypatch, {"dagster": dagster_module()})
    config = Path(os.environ["ASANA_ETL_CONFIG"])
    config.write_text(config.read_text(encoding="utf-8").replace(
        "users = [", 'users = ["1999999999999999", '), encoding="utf-8")  # no such user
    with pytest.raises(Failure) as failure:
        recipe.time_tracking_entries(types.SimpleNamespace())
    assert "user:1999999999999999" in str(failure.value)
    assert failure.value.metadata["status"] == "partial"
    assert failure.value.metadata["inserted"] == len(asana_server.dataset.entries)


# --- Prefect ------------------------------------------------------------------------------

def prefect_module() -> types.ModuleType:
    class Task:
        def __init__(self, function):
            self.function = function

        def __call__(self, *args):
            return self.function(*args)

        def submit(self, *args):
            try:
                value, error = self.function(*args), None
            except Exception as exc:  # a future holds its task's error until .result()
                value, error = None, exc

            def result():
                if error is not None:
                    raise error
                return value

            return types.SimpleNamespace(result=result)

    return module("prefect", flow=lambda **kwargs: (lambda function: function),
                  task=lambda **kwargs: Task,
                  get_run_logger=lambda: logging.getLogger("prefect.stand-in"))


def test_the_prefect_flow_runs_every_group_and_sums_their_summaries(
    asana_server, groups, monkeypatch
):
    recipe = load_recipe("prefect_asana_etl.py", monkeypatch, {"prefect": prefect_module()})
    entries = len(asana_server.dataset.entries)
    assert recipe.nightly() == {"entries_seen": entries, "inserted": entries, "updated": 0,
                                "deleted": 0, "rejected": 0}
    assert recipe.nightly()["inserted"] == 0

    # a group whose scope another run holds: the task raises ScopeHeld, worth a retry
    engine = engines.make_engine(f"sqlite:///{groups.parent / 'asana.db'}")
    try:
        with scope_locks(engine, [Scope("user", sorted(asana_server.dataset.users)[0])],
                         "sync"):
            with pytest.raises(recipe.ScopeHeld, match="another run holds scope"):
                recipe.sync_group(str(groups / "team-a.toml"))
    finally:
        engine.dispose()
