"""Dagster (tested on 1.13) with Dagster Pipes: the assets run the `asana-etl` command,
which reports its run summary back to Dagster as the materialization's metadata.

    pip install dagster dagster-webserver                      # Dagster's venv
    /srv/asana-etl/.venv/bin/pip install dagster-pipes         # asana-etl's venv
    export ASANA_ETL_BIN=/srv/asana-etl/.venv/bin/asana-etl
    export ASANA_ETL_CONFIG=/etc/asana-etl/config.toml
    dagster dev -f dagster_pipes_asana_etl.py

Unlike dagster_asana_etl.py (the Python API, in Dagster's own process), asana-etl here
runs as a process of its own, from its own venv (no shared dependencies with Dagster).
(The same works in a container, with dagster-pipes installed in the image and Dagster's
Pipes client for Docker or Kubernetes instead of the subprocess one; that is not tested
here.) Launched through Pipes, `asana-etl sync`/`backfill` hands Dagster its summary when
it ends: on success, a materialization whose metadata is the run's counts (`run_id`,
`status`, `entries_seen`, `inserted`, `updated`, `unchanged`, `deleted`, `rejected`,
`requests`, `seconds`); always, the whole summary document as a custom message. Its JSON
log lines go to the step's stderr (Dagster's compute logs).

Any other exit than 0 fails the step (Pipes gives the asset no exit code to tell a held
scope from a failed one), and the retry policy runs it again: right for a failed scope
(1), a held scope (4) and a database that failed (5); a bad config (2) or a refused
token (3) fails every attempt the same way, and the first attempt's log says why.
"""

# no `from __future__ import annotations`: Dagster reads the annotation of `context`
# itself, and refuses it as a string
import datetime as dt
import os

import dagster as dg

ASANA_ETL = os.environ.get("ASANA_ETL_BIN", "/srv/asana-etl/.venv/bin/asana-etl")
CONFIG = os.environ.get("ASANA_ETL_CONFIG", "/etc/asana-etl/config.toml")
RECENT_DAYS = 30  # nightly: the last 30 days, and every scope in full once a week

# a run that failed (a failed or held scope: any exit but 0) is run again, 2, 6 and 14
# minutes later
retry = dg.RetryPolicy(max_retries=3, delay=120, backoff=dg.Backoff.EXPONENTIAL)


def asana_etl(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient,
              *arguments: str) -> dg.MaterializeResult:
    """`asana-etl --config CONFIG --log-format json <arguments>` through Pipes; the
    materialization it reported."""
    command = [ASANA_ETL, "--config", CONFIG, "--log-format", "json", *arguments]
    return pipes.run(command=command, context=context).get_materialize_result()


@dg.asset(group_name="asana", retry_policy=retry, kinds={"sql"})
def time_tracking_entries(context: dg.AssetExecutionContext,
                          pipes_subprocess_client: dg.PipesSubprocessClient
                          ) -> dg.MaterializeResult:
    """Asana's time tracking entries, kept equal to Asana by the nightly sync."""
    return asana_etl(context, pipes_subprocess_client, "sync", "--recent", str(RECENT_DAYS))


monthly = dg.MonthlyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)


@dg.asset(group_name="asana", partitions_def=monthly, retry_policy=retry, kinds={"sql"})
def time_tracking_entries_by_month(context: dg.AssetExecutionContext,
                                   pipes_subprocess_client: dg.PipesSubprocessClient
                                   ) -> dg.MaterializeResult:
    """One month of entries (by `entered_on`), re-runnable at will: `backfill --since
    --until` asks Asana for those days only and looks for deletions among them only."""
    window = context.partition_time_window  # [start, end): end is next month's first day
    last = window.end.date() - dt.timedelta(days=1)
    return asana_etl(context, pipes_subprocess_client, "backfill",
                     "--since", window.start.date().isoformat(), "--until", last.isoformat())


nightly = dg.ScheduleDefinition(
    job=dg.define_asset_job("asana_etl_nightly", selection=[time_tracking_entries]),
    cron_schedule="15 2 * * *",
    execution_timezone="UTC",
)

defs = dg.Definitions(
    assets=[time_tracking_entries, time_tracking_entries_by_month],
    schedules=[nightly],
    resources={"pipes_subprocess_client": dg.PipesSubprocessClient()},
)
