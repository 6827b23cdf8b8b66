"""Prefect (tested on 3.9): the nightly sync as a flow with one task per group of scopes.

    pip install prefect
    python prefect_asana_etl.py            # one run now
    prefect work-pool create asana-etl --type process
    prefect deploy prefect_asana_etl.py:nightly --name nightly --pool asana-etl --cron "15 2 * * *"

Each group is a config file in $ASANA_ETL_GROUPS, as for the Airflow recipe (its own
share of `[scopes]` and of `requests_per_minute`). A task runs `asana-etl sync` in a
process of its own (on Linux a run forks a fetcher process, which a thread of a busy
worker should not) and returns the run summary that `--summary-file` wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task

ASANA_ETL = os.environ.get("ASANA_ETL_BIN", "/srv/asana-etl/.venv/bin/asana-etl")
GROUPS = Path(os.environ.get("ASANA_ETL_GROUPS", "/etc/asana-etl/groups"))
LOCKED = 4  # another run holds one of this run's scopes


class ScopeHeld(RuntimeError):
    """Another run holds one of the group's scopes: worth a retry later."""


@task(retries=3, retry_delay_seconds=300)
def sync_group(config: str) -> dict:
    """One `asana-etl sync` over the group `config`; its summary (any scope failed: the
    task fails, with the summary in its message)."""
    with tempfile.TemporaryDirectory() as folder:
        summary = Path(folder) / "summary.json"
        done = subprocess.run(
            [ASANA_ETL, "--config", config, "--log-format", "json", "sync",
             "--summary-file", str(summary)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        document = json.loads(summary.read_text()) if summary.exists() else None
    logger = get_run_logger()
    for line in done.stderr.splitlines():  # the run's JSON log lines, into Prefect's log
        logger.info(line)
    if done.returncode == LOCKED:
        raise ScopeHeld(document["error"] if document else "a scope is held by another run")
    if done.returncode != 0:
        raise RuntimeError(f"asana-etl exited {done.returncode}: {json.dumps(document)}")
    return document


@flow(name="asana-etl nightly")
def nightly(groups: str = str(GROUPS)) -> dict:
    """Every group at once; the counts summed."""
    configs = sorted(str(p) for p in Path(groups).glob("*.toml"))
    futures = [sync_group.submit(config) for config in configs]
    documents = [future.result() for future in futures]  # raises if a group failed
    totals = {key: sum(d[key] for d in documents)
              for key in ("entries_seen", "inserted", "updated", "deleted", "rejected")}
    get_run_logger().info("asana-etl: %d groups: %s", len(documents), totals)
    return totals


if __name__ == "__main__":
    nightly()
