"""What a run did: its result, the source of the run summary (`RunResult.document`),
its `sync_runs` row and the command's last line, so that the three always agree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from etl.config import DateWindow, Scope
from etl.errors import ExitCode
from etl.store import runs
from etl.store.runs import PageCounts
from etl.wording import count


@dataclass
class ScopeResult:
    """What a run did with one scope (its `sync_run_scopes` row, as the run knows it)."""

    scope: Scope
    status: str = runs.RUNNING
    counts: PageCounts = field(default_factory=PageCounts)
    pages: int = 0
    restarts: int = 0
    retries: int = 0
    error: str | None = None
    #: the days read (both bounds None: all of them)
    window: DateWindow = DateWindow()
    #: date windows the scope was read in, and the requests that took
    listings: int = 0
    requests: int = 0

    def document(self) -> dict[str, Any]:
        """The scope as the run summary shows it."""
        c = self.counts
        return {
            "scope": str(self.scope), "status": self.status, "entries_seen": c.entries,
            "inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged,
            "deleted": c.deleted, "rejected": c.rejected, "error": self.error,
            "window": {"since": iso(self.window.since), "until": iso(self.window.until)},
            "listings": self.listings, "pages": self.pages, "requests": self.requests,
            "retries": self.retries, "restarts": self.restarts,
        }


#: The version of the run summary document (`RunResult.document`); a change that drops or
#: renames a key gets a new one.
SUMMARY_SCHEMA = "asana-etl/run-summary/1"


@dataclass
class RunResult:
    """What a run did: its `sync_runs` row and its scopes. `run_sync` returns one for
    every run that started, failed scopes included; the run summary (`document`) is
    built from it, so the two always agree."""

    command: str
    run_id: int | None
    status: str
    scopes: list[ScopeResult]
    counts: PageCounts
    seconds: float
    load_seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    last_success: float | None = None  # Unix time of the last fully successful run
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    #: entries' details: requests spent on them, entries whose details changed, and
    #: entries still to read (None: details are off)
    details_requests: int = 0
    details_changed: int = 0
    details_backlog: int | None = None
    #: the requests by kind: listings (and deletion confirmations), details, categories,
    #: timesheets, rates
    requests_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.status == runs.SUCCEEDED else ExitCode.SCOPE_FAILED

    @property
    def failed_scopes(self) -> list[ScopeResult]:
        return [s for s in self.scopes if s.status == runs.FAILED]

    @property
    def entries_seen(self) -> int:
        return self.counts.entries

    @property
    def inserted(self) -> int:
        return self.counts.inserted

    @property
    def updated(self) -> int:
        return self.counts.updated

    @property
    def unchanged(self) -> int:
        return self.counts.unchanged

    @property
    def deleted(self) -> int:
        return self.counts.deleted

    @property
    def rejected(self) -> int:
        return self.counts.rejected

    def document(self, exit_code: int | None = None) -> dict[str, Any]:
        """The run summary: one JSON object, the last line on stdout with `--log-format
        json` and what `--summary-file` holds. `exit_code`, when the process exits with
        another than the run's own (stopped by a signal, say)."""
        return {
            "schema": SUMMARY_SCHEMA, "run_id": self.run_id, "command": self.command,
            "status": self.status,
            "exit_code": int(self.exit_code if exit_code is None else exit_code),
            "entries_seen": self.entries_seen, "inserted": self.inserted,
            "updated": self.updated, "unchanged": self.unchanged, "deleted": self.deleted,
            "rejected": self.rejected, "scopes": [s.document() for s in self.scopes],
            "seconds": round(self.seconds, 3), "requests": self.requests,
            "retries": self.retries, "rate_limited": self.rate_limited,
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "error": self.error, "details_requests": self.details_requests,
            "details_changed": self.details_changed, "details_backlog": self.details_backlog,
            "requests_by_kind": self.requests_by_kind,
        }

    def log_fields(self) -> dict[str, Any]:
        """The run as its last log line (`run_finished`) carries it."""
        return {
            "run_id": self.run_id, "status": self.status, "scopes": len(self.scopes),
            "scopes_failed": len(self.failed_scopes), **vars(self.counts),
            "seconds": round(self.seconds, 3), "load_seconds": round(self.load_seconds, 3),
            "requests": self.requests, "retries": self.retries,
            "rate_limited": self.rate_limited, "details_requests": self.details_requests,
            "details_changed": self.details_changed, "details_backlog": self.details_backlog,
            "requests_by_kind": self.requests_by_kind,
        }

    def summary(self) -> str:
        c = self.counts
        failed = len(self.failed_scopes)
        return (
            f"{self.command} {self.status}: {count(len(self.scopes), 'scope')}"
            f"{f' ({failed} failed)' if failed else ''}, {count(c.entries, 'entry')} seen, "
            f"{c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged, "
            f"{c.deleted} deleted, {c.rejected} rejected{self._details()} in {self.seconds:.1f} s"
        )

    def _details(self) -> str:
        """', details: 312 requests, 40 changed, 1200 left' with details on, else ''."""
        if self.details_backlog is None and not self.details_requests:
            return ""
        left = "" if self.details_backlog is None else f", {self.details_backlog} left"
        return (f"; details: {count(self.details_requests, 'request')}, "
                f"{self.details_changed} changed{left}")


def totals(scopes: Iterable[ScopeResult]) -> PageCounts:
    """The run's counts: its scopes' summed."""
    total = PageCounts()
    for scope in scopes:
        total.add(scope.counts)
    return total


def iso(value: dt.date | dt.datetime | None) -> str | None:
    """ISO 8601 (a timestamp in UTC, with `T`), or None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value.isoformat()
