"""Dagster (tested on 1.13): the time tracking tables as assets, through asana-etl's
Python API. (To run the `asana-etl` command instead and hand its summary to Dagster,
see dagster_pipes_asana_etl.py.)

    pip install dagster dagster-webserver /srv/asana-etl
    ASANA_ETL_CONFIG=/etc/asana-etl/config.toml dagster dev -f dagster_asana_etl.py

`time_tracking_entries` is the nightly sync (scheduled at 02:15 UTC);
`time_tracking_entries_by_month` is the backfill, one partition per month, each one
re-runnable at will. Both report the run's counts as materialization metadata. A run in
which a scope failed is a failed step, with the counts in its metadata, that the retry
policy runs again.
"""

# no `from __future__ import annotations`: Dagster reads the annotation of `context`
# itself, and refuses it as a string
import datetime as dt
import os

import dagster as dg

from etl import DateWindow, LockError, RunResult, load_settings, run_backfill, run_sync

CONFIG = os.environ.get("ASANA_ETL_CONFIG", "/etc/asana-etl/config.toml")
RECENT_DAYS = 30  # nightly: the last 30 days, and every scope in full once a week
HELD_WAIT_SECONDS = 300  # a scope held by another run: try again after this long

# a run in which a scope failed (a Failure) is run again, 2, 6 and 14 minutes later
retry = dg.RetryPolicy(max_retries=3, delay=120, backoff=dg.Backoff.EXPONENTIAL)


def materialized(result: RunResult) -> dg.MaterializeResult:
    metadata = {
        "run_id": result.run_id,
        "status": result.status,
        "inserted": result.inserted,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "deleted": result.deleted,
        "rejected": result.rejected,
        "requests": result.requests,
        "seconds": dg.MetadataValue.float(round(result.seconds, 1)),
    }
    if result.exit_code != 0:
        failed = "; ".join(f"{s.scope}: {s.error}" for s in result.failed_scopes)
        raise dg.Failure(description=f"asana-etl run #{result.run_id} {result.status}: {failed}",
                         metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


def sync_once(run):
    """`run()`, a LockError (another run holds a scope) turned into a retry."""
    try:
        return materialized(run())
    except LockError as exc:
        raise dg.RetryRequested(max_retries=10, seconds_to_wait=HELD_WAIT_SECONDS) from exc


@dg.asset(group_name="asana", retry_policy=retry, kinds={"sql"})
def time_tracking_entries(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Asana's time tracking entries, kept equal to Asana by the nightly sync."""
    return sync_once(lambda: run_sync(load_settings(CONFIG), recent_days=RECENT_DAYS))


monthly = dg.MonthlyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)


@dg.asset(group_name="asana", partitions_def=monthly, retry_policy=retry, kinds={"sql"})
def time_tracking_entries_by_month(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """One month of entries (by `entered_on`): Asana is asked for those days only, and
    deletions are looked for among them only, so re-materializing a month is harmless."""
    window = context.partition_time_window  # [start, end): end is next month's first day
    days = DateWindow(window.start.date(), window.end.date() - dt.timedelta(days=1))
    return sync_once(lambda: run_backfill(load_settings(CONFIG), window=days))


nightly = dg.ScheduleDefinition(
    job=dg.define_asset_job("asana_etl_nightly", selection=[time_tracking_entries]),
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
)

defs = dg.Definitions(assets=[time_tracking_entries, time_tracking_entries_by_month],
                      schedules=[nightly])
