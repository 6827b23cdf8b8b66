"""Airflow 3 (tested on 3.3; the imports fall back to Airflow 2.7+'s): the nightly sync
fanned out into one task per group of scopes, and a backfill partitioned by month. Copy
this file into your dags folder.

A group is a config file of its own in $ASANA_ETL_GROUPS (default /etc/asana-etl/groups),
one task per `*.toml` there: the same `[database]` and `[asana] token_file` as the others,
its share of the `[scopes]`, and its share of the token's budget,
`requests_per_minute = 1500 / <groups>` (the groups run at once on one token; see
docs/orchestration.md). $ASANA_ETL_BIN is the `asana-etl` of the venv it is installed in.

Each group task's last output line is the run summary (`--summary-file`, printed at the
end), which the BashOperator pushes as its XCom when it succeeds; `report` sums them. A
group that finds one of its scopes held by another run (exit 4) is skipped, not failed.
A group whose run failed (exit 1: a scope failed, the others are loaded; 2, 3, 5) fails
once its retries are spent, and the DAG run fails with it (`report` is then
`upstream_failed`); its summary is the last line of its log.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from pathlib import Path

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3: the authoring interface is airflow.sdk, the operators are providers'
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.7+
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator

ASANA_ETL = os.environ.get("ASANA_ETL_BIN", "/srv/asana-etl/.venv/bin/asana-etl")
GROUPS = Path(os.environ.get("ASANA_ETL_GROUPS", "/etc/asana-etl/groups"))
#: the whole config, for the backfill (one run reads every scope of a month)
CONFIG = os.environ.get("ASANA_ETL_CONFIG", "/etc/asana-etl/config.toml")
LOCKED = 4  # another run holds one of this run's scopes

log = logging.getLogger(__name__)


def summarised(arguments: str) -> str:
    """A bash command that runs `asana-etl <arguments> --summary-file …` and prints the
    summary as its last line, exiting as asana-etl did. The JSON log lines (stderr) go to
    the task log; the summary line that asana-etl prints itself is dropped, so that the
    file's copy is the last line whatever order the two streams interleave in."""
    return (
        'summary="$(mktemp)"; '
        f'{shlex.quote(ASANA_ETL)} --log-format json {arguments} --summary-file "$summary" '
        '>/dev/null; code=$?; cat "$summary"; rm -f "$summary"; exit $code'
    )


def report(**context) -> dict:
    """Sum the summaries of the groups that ran (a skipped group pushed none). It runs
    only if no group failed: a task that exits non-zero pushes no XCom, so its summary is
    in its log only, and the report's `upstream_failed` fails the DAG run."""
    ti = context["ti"]
    task_ids = sorted(t for t in context["dag"].task_ids if t.startswith("sync_"))
    documents = [json.loads(line) for line in ti.xcom_pull(task_ids=task_ids) if line]
    totals = {key: sum(d[key] for d in documents)
              for key in ("entries_seen", "inserted", "updated", "deleted", "rejected")}
    log.info("asana-etl: %d of %d groups ran: %s", len(documents), len(task_ids), totals)
    return totals


with DAG(
    dag_id="asana_etl_nightly",
    schedule="15 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["asana-etl"],
) as nightly:
    groups = [
        BashOperator(
            task_id=f"sync_{config.stem}",
            bash_command=summarised(f"--config {shlex.quote(str(config))} sync"),
            skip_on_exit_code=LOCKED,
            retries=2,
            retry_delay=pendulum.duration(minutes=10),
        )
        for config in sorted(GROUPS.glob("*.toml"))
    ]
    # none_failed: after every group, skipped ones included; a failed group fails the run
    groups >> PythonOperator(task_id="report", python_callable=report,
                             trigger_rule="none_failed")


# The backfill, one partition per calendar month from START: each run reads only its
# month's days from Asana (`--since`/`--until`, inclusive) and looks for deletions among
# them only, so a partition can be re-run (Clear) at any time and gives the same rows.
# Partitions take turns (max_active_runs=1): each one locks every scope it reads.
START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG(
    dag_id="asana_etl_backfill_monthly",
    # data intervals of a month on Airflow 3 too, whose default cron timetable has none
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    start_date=START,
    catchup=True,
    max_active_runs=1,
    tags=["asana-etl"],
) as backfill:
    BashOperator(
        task_id="backfill_month",
        bash_command=summarised(
            f'--config {shlex.quote(CONFIG)} backfill --since "$SINCE" --until "$UNTIL"'),
        env={
            "SINCE": "{{ data_interval_start | ds }}",
            # the interval's end is the next month's first day: the month ends the day before
            "UNTIL": "{{ macros.ds_add(data_interval_end | ds, -1) }}",
        },
        append_env=True,
        skip_on_exit_code=LOCKED,
        retries=3,
        retry_delay=pendulum.duration(minutes=15),
    )
