"""Prometheus textfile-collector metrics for a finished run (`--metrics-file PATH`).

Written with prometheus-client's own writer, which writes a temporary file and renames
it, so node_exporter never reads half a file. It is imported only when a run writes
metrics: with its HTTP server, a twentieth of a second of every other run's start.
"""

from __future__ import annotations

import time
from pathlib import Path

from etl.run.result import RunResult
from etl.store import runs


def write_metrics(path: str | Path, result: RunResult) -> None:
    """Write the run's metrics to `path` (atomically)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    labels = {"command": result.command}

    def gauge(name: str, doc: str, value: float, **extra: str) -> None:
        metric = Gauge(f"asana_etl_{name}", doc, [*labels, *extra], registry=registry)
        metric.labels(**labels, **extra).set(value)

    gauge("last_run_timestamp_seconds", "When the last run finished (Unix time).", time.time())
    gauge("last_run_success", "1 if the last run loaded every scope, else 0.",
          int(result.status == runs.SUCCEEDED))
    if result.last_success is not None:
        gauge("last_success_timestamp_seconds",
              "When the last run that loaded every scope finished (Unix time).",
              result.last_success)
    gauge("last_run_duration_seconds", "How long the last run took.", result.seconds)
    entries = Gauge("asana_etl_last_run_entries", "Entries of the last run, by outcome.",
                    [*labels, "outcome"], registry=registry)
    c = result.counts
    for outcome, value in (("seen", c.entries), ("inserted", c.inserted), ("updated", c.updated),
                           ("unchanged", c.unchanged), ("deleted", c.deleted),
                           ("rejected", c.rejected)):
        entries.labels(**labels, outcome=outcome).set(value)
    scope_ok = Gauge("asana_etl_scope_success", "1 if the scope loaded in the last run, else 0.",
                     [*labels, "scope_type", "scope_gid"], registry=registry)
    scope_errors = Gauge("asana_etl_scope_errors", "Failures of the scope in the last run "
                         "(0 or 1).", [*labels, "scope_type", "scope_gid"], registry=registry)
    scope_retries = Gauge("asana_etl_scope_retries", "Retries the scope needed in the last run.",
                          [*labels, "scope_type", "scope_gid"], registry=registry)
    for scope in result.scopes:
        scope_labels = {**labels, "scope_type": scope.scope.kind, "scope_gid": scope.scope.gid}
        ok = scope.status == runs.SUCCEEDED
        scope_ok.labels(**scope_labels).set(int(ok))
        scope_errors.labels(**scope_labels).set(int(not ok))
        scope_retries.labels(**scope_labels).set(scope.retries)
    gauge("last_run_requests", "HTTP requests the last run sent to Asana.", result.requests)
    gauge("last_run_rate_limited", "429 answers the last run got.", result.rate_limited)
    gauge("last_run_details_requests", "Requests the last run spent on entries' details.",
          result.details_requests)
    if result.details_backlog is not None:
        gauge("details_backlog", "Entries whose details were still to read after the last run.",
              result.details_backlog)
    write_to_textfile(str(path), registry)
