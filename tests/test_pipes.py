"""etl.cli.pipes outside Dagster: a no-op that imports nothing, and a warning (never an
error) when launched by Pipes without dagster-pipes. Through Dagster for real:
tests/recipes/test_dagster.py (`./run-tests --recipes dagster`)."""

from __future__ import annotations

import logging
import sys

from etl.cli import pipes

DOCUMENT = {"schema": "asana-etl/run-summary/1", "run_id": 7, "status": "succeeded",
            "exit_code": 0, "entries_seen": 12, "inserted": 3, "updated": 1, "unchanged": 8,
            "deleted": 0, "rejected": 0, "requests": 4, "seconds": 1.234, "error": None}


def test_outside_pipes_report_does_nothing_and_imports_nothing(monkeypatch, caplog):
    monkeypatch.delenv(pipes.CONTEXT_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "dagster_pipes", None)  # an import would raise
    with caplog.at_level(logging.DEBUG):
        pipes.report(DOCUMENT)
    assert caplog.records == []


def test_launched_by_pipes_without_dagster_pipes_it_warns_and_goes_on(monkeypatch, caplog):
    monkeypatch.setenv(pipes.CONTEXT_ENV, "eyJwYXRoIjogIi90bXAveCJ9")
    monkeypatch.setitem(sys.modules, "dagster_pipes", None)
    pipes.report(DOCUMENT)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "pip install dagster-pipes" in record.getMessage()


def test_the_metadata_are_the_counts_typed():
    assert pipes.metadata(DOCUMENT) == {
        "run_id": {"raw_value": 7, "type": "int"},
        "status": {"raw_value": "succeeded", "type": "text"},
        "entries_seen": {"raw_value": 12, "type": "int"},
        "inserted": {"raw_value": 3, "type": "int"},
        "updated": {"raw_value": 1, "type": "int"},
        "unchanged": {"raw_value": 8, "type": "int"},
        "deleted": {"raw_value": 0, "type": "int"},
        "rejected": {"raw_value": 0, "type": "int"},
        "requests": {"raw_value": 4, "type": "int"},
        "seconds": {"raw_value": 1.2, "type": "float"},
    }
