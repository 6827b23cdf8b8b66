"""docs/recipes/prefect_asana_etl.py on the real Prefect: the flow is called as a user
would (`nightly()`), with Prefect's ephemeral local API (a temporary server of its own
on loopback, its database in a temporary PREFECT_HOME), against the simulated Asana."""

from __future__ import annotations

import os
import tempfile

# Prefect reads its settings from the environment: a home of its own, no server to
# reach, nothing sent anywhere, and time for the ephemeral server to start on a busy box
os.environ.update({
    "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-home-"),
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # a task called alone, below
    "DO_NOT_TRACK": "1",
})
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)

import prefect  # noqa: E402
import pytest  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from tests.recipes.conftest import Setup, load_recipe  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    """Prefect's local API for these tests: its server on loopback, started once and
    stopped at the end (Prefect's own test harness; its database a temporary file)."""
    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def recipe(setup: Setup, monkeypatch):
    """The recipe; its task as written (retries=3) but with no wait between tries."""
    module = load_recipe("prefect_asana_etl.py")
    monkeypatch.setattr(module, "sync_group",
                        module.sync_group.with_options(retry_delay_seconds=0))
    return module


def run_count(state: prefect.State) -> int:
    with get_client(sync_client=True) as client:
        return client.read_task_run(state.state_details.task_run_id).run_count


def test_the_flow_runs_every_group_and_sums_their_summaries(recipe, setup: Setup):
    entries = len(setup.data.entries)
    state = recipe.nightly(return_state=True)
    assert state.is_completed()
    assert state.result() == {"entries_seen": entries, "inserted": entries, "updated": 0,
                              "deleted": 0, "rejected": 0}
    setup.exact()
    assert recipe.nightly()["inserted"] == 0
    setup.exact()


def test_the_task_result_is_the_run_summary(recipe, setup: Setup):
    state = recipe.sync_group(str(setup.folder / "team-a.toml"), return_state=True)
    assert state.is_completed()
    document = state.result()
    assert (document["schema"], document["command"], document["status"],
            document["exit_code"]) == ("asana-etl/run-summary/1", "sync", "succeeded", 0)
    team_a = {s["scope"] for s in document["scopes"]}
    assert team_a and all(s.startswith("user:") for s in team_a)
    stored = setup.stored()
    assert document["inserted"] == len(stored) > 0
    assert {f"user:{row['created_by_gid']}" for row in stored.values()} <= team_a


def test_a_failed_scope_fails_the_flow_run_after_the_tasks_retries(recipe, setup: Setup):
    config = setup.folder / "team-a.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(
        "users = [", 'users = ["1999999999999999", '), encoding="utf-8")  # no such user
    state = recipe.nightly(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match=r"asana-etl exited 1: .*user:1999999999999999"):
        state.result()
    # the group's other scopes, and the other group, are loaded all the same
    setup.exact()
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    attempts = {t.name.split("-")[0] + "/" + t.state.type.value: t.run_count for t in tasks}
    assert attempts == {"sync_group/FAILED": 4, "sync_group/COMPLETED": 1}  # retries=3


def test_a_held_scope_is_scope_held_retried_then_loaded_once_free(recipe, setup: Setup):
    config = str(setup.folder / "team-a.toml")
    with setup.holding(setup.first_user("team-a")):
        held = recipe.sync_group(config, return_state=True)
    assert held.is_failed() and run_count(held) == 4
    with pytest.raises(recipe.ScopeHeld, match="another run holds scope user:"):
        held.result()
    assert recipe.sync_group(config)["status"] == "succeeded"
