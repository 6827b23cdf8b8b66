"""Dagster Pipes: the run summary handed to the Dagster asset that launched the run.

A Dagster asset that runs `asana-etl sync` or `backfill` through Dagster Pipes
(`PipesSubprocessClient`; docs/recipes/dagster_pipes_asana_etl.py) sets
`DAGSTER_PIPES_CONTEXT` in the process's environment. When a run that was launched so
ends, `report` sends Dagster, through the `dagster-pipes` package (installed beside
asana-etl: `pip install dagster-pipes`):

- the whole summary document, as a custom message (`get_custom_messages()` on the
  asset's side);
- when the run succeeded (exit 0), a materialization of the asset(s) being materialized,
  its metadata the run's counts: the same keys as the Python API recipe's
  (dagster_asana_etl.py), plus `entries_seen`.

A run that did not succeed reports no materialization: it exits non-zero, which fails
the Dagster step. Launched any other way (no `DAGSTER_PIPES_CONTEXT`), `report` does
nothing and imports nothing; launched by Pipes without `dagster-pipes` installed, it
logs a warning and the run's outcome is unchanged. Nothing sent holds a secret: the
summary has counts, scopes (gids), times and error messages, as on stdout.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

#: set by Dagster in the environment of a process it launches through Pipes
CONTEXT_ENV = "DAGSTER_PIPES_CONTEXT"
#: the summary's keys that become materialization metadata
METADATA_KEYS = ("run_id", "status", "entries_seen", "inserted", "updated", "unchanged",
                 "deleted", "rejected", "requests", "seconds")


def launched_by_pipes() -> bool:
    return bool(os.environ.get(CONTEXT_ENV))


def metadata(document: dict[str, Any]) -> dict[str, Any]:
    """The materialization metadata of a summary document, typed as Dagster shows it."""
    values: dict[str, Any] = {}
    for key in METADATA_KEYS:
        value = document.get(key)
        if value is None:
            continue
        kind = "float" if key == "seconds" else "text" if key == "status" else "int"
        values[key] = {"raw_value": round(value, 1) if kind == "float" else value,
                       "type": kind}
    return values


def report(document: dict[str, Any]) -> None:
    """Hand the run summary `document` to Dagster if this process was launched through
    Pipes; otherwise do nothing. Never raises: the run's own outcome stands."""
    if not launched_by_pipes():
        return
    try:
        from dagster_pipes import open_dagster_pipes
    except ImportError:
        log.warning("launched by Dagster Pipes, but the dagster-pipes package is not "
                    "installed beside asana-etl (pip install dagster-pipes): the summary "
                    "is not reported to Dagster",
                    extra={"event": "pipes_unavailable"})
        return
    try:
        with open_dagster_pipes() as pipes:
            pipes.report_custom_message(document)
            if document.get("exit_code") == 0 and pipes.is_asset_step:
                for key in pipes.asset_keys:
                    pipes.report_asset_materialization(metadata=metadata(document),
                                                       asset_key=key)
    except Exception as exc:  # a broken channel to Dagster must not change the exit code
        log.warning("could not report the summary to Dagster Pipes: %s", exc,
                    extra={"event": "pipes_failed"})
