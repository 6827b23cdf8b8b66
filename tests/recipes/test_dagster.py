"""docs/recipes/dagster_asana_etl.py and dagster_pipes_asana_etl.py on the real Dagster:
the assets materialize in-process (`dg.materialize`, an ephemeral instance), against the
simulated Asana, and the table is exact afterwards."""

# no `from __future__ import annotations`: Dagster refuses string annotations of `context`
import contextlib
import datetime as dt
import json
import os
import subprocess

import dagster as dg
import pytest

from tests.recipes.conftest import (
    Setup,
    busiest_month,
    entries_in,
    environment,
    load_recipe,
    next_month,
)

# Dagster's own PipesSubprocessClient calls its deprecated context.run_id and a preview API
pytestmark = [
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
    pytest.mark.filterwarnings("ignore:Function `PipesMessageReader.expected_writer_count`"),
]

COUNTS = ("inserted", "updated", "unchanged", "deleted", "rejected", "requests", "run_id",
          "status", "seconds")


def quick_retries(monkeypatch) -> None:
    """The recipes' RetryPolicy as written, but for its delay: 10 ms, not minutes."""
    policy = dg.RetryPolicy
    monkeypatch.setattr(dg, "RetryPolicy", lambda **kw: policy(**{**kw, "delay": 0.01}))


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in materialization.metadata.items()}


def events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == kind]


@pytest.fixture
def recipe(setup: Setup, monkeypatch):
    quick_retries(monkeypatch)
    return load_recipe("dagster_asana_etl.py")


def test_the_definitions_load_and_name_the_assets_schedule_and_partitions(recipe):
    defs = recipe.defs
    assert {key.to_user_string() for key in defs.resolve_all_asset_keys()} == {
        "time_tracking_entries", "time_tracking_entries_by_month"}
    schedule = defs.resolve_schedule_def("asana_etl_nightly_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("15 2 * * *", "UTC")
    partitions = recipe.time_tracking_entries_by_month.partitions_def
    assert partitions.get_first_partition_key() == "2024-01-01"
    today = dt.datetime.now(dt.timezone.utc).date()
    assert partitions.get_last_partition_key() == today.replace(day=1).isoformat()


def test_the_nightly_asset_materializes_with_its_counts_as_metadata(recipe, setup: Setup):
    data = setup.data
    result = dg.materialize([recipe.time_tracking_entries])
    assert result.success
    first = metadata(result, "time_tracking_entries")
    assert set(first) == set(COUNTS)
    assert (first["status"], first["inserted"], first["updated"], first["deleted"],
            first["rejected"]) == ("succeeded", len(data.entries), 0, 0, 0)
    setup.exact()

    # the next night reads the last RECENT_DAYS days only (the full read is a week away)
    today = dt.datetime.now(dt.timezone.utc).date()
    data.add_entry(next(iter(data.tasks)), sorted(data.users)[0], 30, today)
    recent = entries_in(data, today - dt.timedelta(days=recipe.RECENT_DAYS - 1), dt.date.max)
    again = metadata(dg.materialize([recipe.time_tracking_entries]), "time_tracking_entries")
    assert (again["inserted"], again["updated"], again["unchanged"]) == (1, 0, recent - 1)
    assert again["run_id"] == first["run_id"] + 1
    setup.exact()


def test_one_month_partition_reads_that_month_and_reruns_harmlessly(recipe, setup: Setup):
    data = setup.data
    month = busiest_month(data)
    in_month = entries_in(data, month, next_month(month) - dt.timedelta(days=1))
    assert 0 < in_month < len(data.entries)
    for attempt in range(2):
        result = dg.materialize([recipe.time_tracking_entries_by_month],
                                partition_key=month.isoformat())
        assert result.success
        counts = metadata(result, "time_tracking_entries_by_month")
        assert (counts["inserted"], counts["unchanged"]) == (
            (in_month, 0) if attempt == 0 else (0, in_month))
    # nothing of the other months was read
    assert len(setup.stored()) == in_month


def test_a_held_scope_is_retried_later_by_retry_requested(recipe, setup: Setup, monkeypatch):
    """Another run holds a scope: the step asks to be run again in HELD_WAIT_SECONDS
    (RetryRequested, not a failure); once the scope is free the retry loads the month."""
    monkeypatch.setattr(recipe, "HELD_WAIT_SECONDS", 0.01)
    held = contextlib.ExitStack()
    held.enter_context(setup.holding(sorted(setup.data.users)[0]))
    attempts = []
    backfill = recipe.run_backfill

    def run_backfill(*args, **kwargs):  # the real one; the scope is free from attempt 2
        attempts.append(dt.datetime.now())
        if len(attempts) == 2:
            held.close()
        return backfill(*args, **kwargs)

    monkeypatch.setattr(recipe, "run_backfill", run_backfill)
    month = busiest_month(setup.data)
    try:
        result = dg.materialize([recipe.time_tracking_entries_by_month],
                                partition_key=month.isoformat())
    finally:
        held.close()
    assert result.success and len(attempts) == 2
    (retry,) = events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert retry.event_specific_data.seconds_to_wait == 0.01
    assert "another run holds scope user:" in retry.event_specific_data.error.cause.message
    counts = metadata(result, "time_tracking_entries_by_month")
    assert counts["inserted"] == entries_in(setup.data, month,
                                            next_month(month) - dt.timedelta(days=1))


def test_a_failed_scope_fails_the_step_with_the_counts_after_the_retry_policy(
    recipe, setup: Setup
):
    config = setup.config
    config.write_text(config.read_text(encoding="utf-8").replace(
        "users = [", 'users = ["1999999999999999", '), encoding="utf-8")  # no such user
    result = dg.materialize([recipe.time_tracking_entries], raise_on_error=False)
    assert not result.success
    assert len(events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 3  # max_retries
    (failure,) = events(result, dg.DagsterEventType.STEP_FAILURE)
    data = failure.event_specific_data
    assert "user:1999999999999999" in data.error.cause.message
    counts = {k: v.value for k, v in data.user_failure_data.metadata.items()}
    # the counts of the last of the four attempts (recent reads of the other scopes,
    # which the first attempt loaded in full)
    assert (counts["status"], counts["inserted"], counts["updated"]) == ("partial", 0, 0)
    setup.exact()


# --- Dagster Pipes: dagster_pipes_asana_etl.py, and etl/cli/pipes.py on the tool's side ------

@pytest.fixture
def pipes_recipe(setup: Setup, monkeypatch):
    quick_retries(monkeypatch)
    return load_recipe("dagster_pipes_asana_etl.py")


def test_through_pipes_the_tool_reports_its_counts_as_the_materialization(
    pipes_recipe, setup: Setup
):
    recipe = pipes_recipe
    result = dg.materialize([recipe.time_tracking_entries], resources=recipe.defs.resources)
    assert result.success
    counts = metadata(result, "time_tracking_entries")
    entries = len(setup.data.entries)
    assert counts == {**counts, "status": "succeeded", "entries_seen": entries,
                      "inserted": entries, "updated": 0, "deleted": 0, "rejected": 0}
    assert set(counts) == {"run_id", "status", "entries_seen", "inserted", "updated",
                           "unchanged", "deleted", "rejected", "requests", "seconds"}
    setup.exact()

    month = busiest_month(setup.data)
    in_month = entries_in(setup.data, month, next_month(month) - dt.timedelta(days=1))
    result = dg.materialize([recipe.time_tracking_entries_by_month],
                            partition_key=month.isoformat(), resources=recipe.defs.resources)
    assert result.success
    counts = metadata(result, "time_tracking_entries_by_month")
    assert (counts["entries_seen"], counts["unchanged"], counts["inserted"]) == (
        in_month, in_month, 0)


def test_through_pipes_the_summary_document_is_a_custom_message(setup: Setup, tmp_path):
    """Any asset may read the whole summary: it equals the --summary-file document."""
    summary = tmp_path / "summary.json"
    messages = []

    @dg.asset
    def entries(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient):
        done = pipes.run(context=context, command=[
            os.environ["ASANA_ETL_BIN"], "--config", str(setup.config), "sync",
            "--summary-file", str(summary)])
        messages.extend(done.get_custom_messages())
        return done.get_materialize_result()

    result = dg.materialize([entries], resources={"pipes": dg.PipesSubprocessClient()})
    assert result.success
    (document,) = messages
    assert document == json.loads(summary.read_text(encoding="utf-8"))
    assert document["status"] == "succeeded" and document["exit_code"] == 0


def test_through_pipes_a_held_scope_fails_the_attempt_and_the_retry_loads(
    pipes_recipe, setup: Setup
):
    """Exit 4 fails the step (Pipes reports no materialization for it); the retry
    policy runs it again, and once the scope is free that attempt loads everything."""
    held = contextlib.ExitStack()
    held.enter_context(setup.holding(sorted(setup.data.users)[0]))
    attempts = []

    class Client(dg.PipesSubprocessClient):
        def run(self, **kwargs):  # the real one; the scope is free from attempt 2
            attempts.append(kwargs["command"])
            if len(attempts) == 2:
                held.close()
            return super().run(**kwargs)

    try:
        result = dg.materialize([pipes_recipe.time_tracking_entries],
                                resources={"pipes_subprocess_client": Client()})
    finally:
        held.close()
    assert result.success and len(attempts) == 2
    (retry,) = events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert "failed with code 4" in retry.event_specific_data.error.cause.message
    (materialization,) = result.asset_materializations_for_node("time_tracking_entries")
    assert materialization.metadata["inserted"].value == len(setup.data.entries)
    setup.exact()


def test_outside_pipes_the_tool_reports_nothing_and_says_nothing_of_it(setup: Setup):
    done = subprocess.run([os.environ["ASANA_ETL_BIN"], "--config", str(setup.config),
                           "--log-format", "json", "sync"],
                          env=environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pipes" not in (done.stdout + done.stderr).lower()
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "succeeded"
