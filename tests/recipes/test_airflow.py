"""docs/recipes/airflow_asana_etl.py and airflow_kubernetes.py on the real Airflow 3:
`airflow dags test` runs the DAGs (a temporary AIRFLOW_HOME, its metadata database a
SQLite file migrated by `airflow db migrate`) against the simulated Asana; the XComs and
task states are read back from that database. The Kubernetes DAG cannot run its pods
here: it is parsed, and the command each pod would run is run here instead."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

# Airflow reads its settings when imported: a home of its own, the recipes as its DAGs
HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
DAGS = HOME / "dags"
os.environ.update({
    "AIRFLOW_HOME": str(HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
})

import pytest  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402

from tests.helpers import TOKEN  # noqa: E402
from tests.recipes.conftest import (  # noqa: E402
    ASANA_ETL,
    RECIPES,
    Setup,
    busiest_month,
    entries_in,
    environment,
    load_recipe,
    make_setup,
    next_month,
)

# Airflow's own import of fastapi's test client, in dag.test()
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
RECIPE_FILES = ["airflow_asana_etl.py", "airflow_kubernetes.py"]


@pytest.fixture(scope="module", autouse=True)
def airflow_home():
    """The recipes in the DAGs folder, and the metadata database migrated."""
    DAGS.mkdir(parents=True, exist_ok=True)
    for name in RECIPE_FILES:
        shutil.copy(RECIPES / name, DAGS / name)
    done = subprocess.run([AIRFLOW, "db", "migrate"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    yield HOME
    shutil.rmtree(HOME, ignore_errors=True)


def dags_test(dag_id: str, *arguments: str) -> tuple[dict[str, str], dict[str, object]]:
    """`airflow dags test dag_id [LOGICAL_DATE]`: the states of the run's tasks, and
    their XComs (`return_value`, decoded), by task id."""
    done = subprocess.run([AIRFLOW, "dags", "test", dag_id, *arguments],
                          capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    with sqlite3.connect(HOME / "airflow.db") as db:
        (run_id,) = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? "
                               "ORDER BY id DESC LIMIT 1", (dag_id,)).fetchone()
        states = dict(db.execute("SELECT task_id, state FROM task_instance "
                                 "WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)))
        xcoms = {task: json.loads(value) for task, value in db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? "
            "AND key = 'return_value'", (dag_id, run_id))}
    return states, xcoms


def test_the_recipes_parse_in_a_dagbag_with_no_import_errors_nor_deprecations(setup):
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dags) == {"asana_etl_nightly", "asana_etl_backfill_monthly",
                             "asana_etl_nightly_k8s"}
    nightly = bag.dags["asana_etl_nightly"]
    assert sorted(nightly.task_ids) == ["report", "sync_team-a", "sync_team-b"]
    backfill = bag.dags["asana_etl_backfill_monthly"]
    assert (backfill.max_active_runs, backfill.catchup) == (1, True)
    for name in RECIPE_FILES:
        load_recipe(name)  # a deprecation warning of Airflow fails here


def test_dags_test_runs_the_nightly_dag_and_each_groups_xcom_is_its_summary(setup: Setup):
    states, xcoms = dags_test("asana_etl_nightly")
    assert states == {"sync_team-a": "success", "sync_team-b": "success",
                      "report": "success"}
    summaries = {task: json.loads(xcoms[task]) for task in ("sync_team-a", "sync_team-b")}
    for summary in summaries.values():
        assert (summary["schema"], summary["command"], summary["status"],
                summary["exit_code"]) == ("asana-etl/run-summary/1", "sync", "succeeded", 0)
    entries = len(setup.data.entries)
    assert sum(s["inserted"] for s in summaries.values()) == entries
    assert xcoms["report"] == {"entries_seen": entries, "inserted": entries, "updated": 0,
                               "deleted": 0, "rejected": 0}
    setup.exact()


def test_a_group_whose_scope_is_held_exits_4_and_is_skipped(setup: Setup):
    with setup.holding(setup.first_user("team-a")):
        states, xcoms = dags_test("asana_etl_nightly")
    # skipped, not failed nor retried; the report runs (all_done) over the group that ran
    assert states == {"sync_team-a": "skipped", "sync_team-b": "success",
                      "report": "success"}
    assert "sync_team-a" not in xcoms
    team_b = json.loads(xcoms["sync_team-b"])
    assert xcoms["report"]["inserted"] == team_b["inserted"] == len(setup.stored()) > 0


def test_a_group_whose_run_failed_fails_the_dag_run(setup: Setup):
    """A failed scope: its group exits 1 and fails, and so does the DAG run (`report`
    is upstream_failed); the other group and the failed group's other scopes are loaded.
    Run in-process by `dag.test()` with the groups' retries set to 0 (as written, the
    test would wait out their ten-minute retry_delay twice)."""
    config = setup.folder / "team-a.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "users = [", 'users = ["1999999999999999", '), encoding="utf-8")  # no such user
    dag = DagBag(dag_folder=str(DAGS)).dags["asana_etl_nightly"]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test()
    assert run.state == "failed"
    with sqlite3.connect(HOME / "airflow.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_instance "
                                 "WHERE dag_id = ? AND run_id = ?", (dag.dag_id, run.run_id)))
    assert states == {"sync_team-a": "failed", "sync_team-b": "success",
                      "report": "upstream_failed"}
    setup.exact()


def test_one_partition_of_the_monthly_backfill_reads_its_month(setup: Setup):
    data = setup.data
    month = busiest_month(data)
    last = next_month(month) - dt.timedelta(days=1)
    # a manual run at the first of the next month has the month as its data interval
    states, xcoms = dags_test("asana_etl_backfill_monthly", next_month(month).isoformat())
    assert states == {"backfill_month": "success"}
    summary = json.loads(xcoms["backfill_month"])
    assert summary["command"] == "backfill" and summary["exit_code"] == 0
    assert {(s["window"]["since"], s["window"]["until"]) for s in summary["scopes"]} == {
        (month.isoformat(), last.isoformat())}
    in_month = entries_in(data, month, last)
    assert summary["inserted"] == len(setup.stored()) == in_month > 0


# --- KubernetesPodOperator ---------------------------------------------------------------

def test_the_kubernetes_dag_parses_and_the_command_of_each_pod_passes_here(
    asana_server, tmp_path
):
    """The ConfigMap's group configs (no token_file: the token is the Secret's, in
    ASANA_ACCESS_TOKEN), mounted where the pod reads them, and /airflow/xcom where the
    operator collects the summary: both are folders of tmp_path here."""
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags["asana_etl_nightly_k8s"]
    groups = [task.task_id.removeprefix("sync_").replace("_", "-") for task in dag.tasks]
    setup = make_setup(asana_server, tmp_path, groups, token_in_file=False)
    xcom = tmp_path / "xcom"
    xcom.mkdir()
    for task in dag.tasks:
        assert task.do_xcom_push and task.skip_on_exit_code == [4]
        (mount,) = task.volume_mounts
        (secret,) = task.env_vars
        assert (secret.name, secret.value_from.secret_key_ref.key) == ("ASANA_ACCESS_TOKEN",
                                                                       "token")
        arguments = [a.replace(mount.mount_path, str(setup.folder))
                      .replace("/airflow/xcom", str(xcom)) for a in task.arguments]
        assert str(setup.folder) in " ".join(arguments)
        done = subprocess.run([str(ASANA_ETL), *arguments], capture_output=True, text=True,
                              env=environment(ASANA_ACCESS_TOKEN=TOKEN), timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads((xcom / "return.json").read_text(encoding="utf-8"))
        assert summary == json.loads(done.stdout.splitlines()[-1])
        assert (summary["status"], summary["exit_code"]) == ("succeeded", 0)
    setup.exact()

    # a held scope: exit 4 (the operator's skip_on_exit_code), and a summary all the same
    task = dag.tasks[0]
    arguments = [a.replace(task.volume_mounts[0].mount_path, str(setup.folder))
                  .replace("/airflow/xcom", str(xcom)) for a in task.arguments]
    group = task.task_id.removeprefix("sync_").replace("_", "-")
    with setup.holding(setup.first_user(group)):
        done = subprocess.run([str(ASANA_ETL), *arguments], capture_output=True, text=True,
                              env=environment(ASANA_ACCESS_TOKEN=TOKEN), timeout=120)
    assert done.returncode == 4
    summary = json.loads((xcom / "return.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == 4 and "another run holds scope" in summary["error"]
