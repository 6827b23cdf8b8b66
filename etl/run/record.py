"""The run's record: its row in `sync_runs` and its scopes' rows in `sync_run_scopes`,
from the first (with the runs that died before it marked `abandoned`) to the last.

A run left `running` is dead when one of its scopes' locks is free (a live run holds
all of its own) and its process is known to be gone. A run on another host, whose
process cannot be looked at from here, with a lock free is only a suspect: it may be
alive and about to find out that it lost its lock (it stops within
`writer.CHECK_SECONDS`), so it is taken for gone only once it stayed that way for
`ABANDON_GRACE` seconds, at the run's end.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import ClassVar

import sqlalchemy as sa

from etl import logcontext
from etl.asana.client import CallStats
from etl.config import DateWindow, Scope
from etl.errors import AsanaError, EtlError, Interrupted
from etl.run.result import ScopeResult
from etl.run.writer import Writer
from etl.store import runs
from etl.store.links import forget_seen
from etl.store.lock import ScopeLocks

log = logging.getLogger(__name__)

#: Seconds a run left `running` on another host, with a lock free, stays a suspect
#: before a run takes it for gone (a live one notices the loss of its lock sooner).
ABANDON_GRACE = 15.0


class RunRecord:
    """One run's bookkeeping rows, written through its `Writer`."""

    #: The runs this process is running (a run row with this process's pid and none of
    #: these ids was left by a run of this process that ended without its final status).
    live: ClassVar[set[int]] = set()

    def __init__(self, engine: sa.Engine, writer: Writer, locks: ScopeLocks,
                 command: str) -> None:
        self.engine = engine
        self.writer = writer
        self.locks = locks
        self.command = command
        self.run_id: int | None = None
        self.started_at: dt.datetime | None = None
        self.finished_at: dt.datetime | None = None
        self.error: str | None = None
        #: runs on other hosts with a lock free, and when they were first suspected
        self.suspects: dict[int, float] = {}

    def start(self, windows: dict[Scope, DateWindow], details_list: str | None = None) -> int:
        """Write the run's row and its scopes' rows (each with the days read), after
        marking the runs that died `abandoned`; returns the run's id. `details_list`:
        what the list answered to the entries' details' fields."""
        now = runs.utcnow()
        dead, self.suspects = self.dead_runs()

        def start(conn: sa.Connection) -> int:
            if dead:
                _abandon(conn, dead, now)
            run_id = runs.start_run(conn, self.command, len(windows), now,
                                    details_list=details_list)
            for scope, window in windows.items():
                runs.start_scope(conn, run_id, scope, now, window)
            return run_id

        self.run_id = self.writer.transaction(start)
        self.started_at = now
        self.locks.run_id = self.run_id
        RunRecord.live.add(self.run_id)
        logcontext.set_run(self.run_id)
        if dead:
            log.warning("run%s %s left running by a process that died: marked abandoned",
                        "s" if len(dead) > 1 else "", ", ".join(f"#{i}" for i in dead))
        return self.run_id

    def dead_runs(self, suspects: dict[int, float] | None = None
                  ) -> tuple[list[int], dict[int, float]]:
        """The runs left `running` that are dead, and those still suspected (with when
        they were first); see the module."""
        with self.engine.connect() as conn:
            running = runs.running_runs(conn)
            running.pop(self.run_id, None)
            free = [run for run, scopes in running.items()
                    if any(self.locks.free(scope) for scope in scopes)]
            processes = runs.processes(conn, free)
        dead, still = [], {}
        now = time.monotonic()
        for run in free:
            hostname, pid, started_at = processes[run]
            alive = runs.process_alive(hostname, pid, started_at)
            if alive and pid == os.getpid():
                alive = run in RunRecord.live
            since = (suspects or {}).get(run, now)
            if alive is False or (alive is None and now - since >= ABANDON_GRACE):
                dead.append(run)
            elif alive is None:
                still[run] = since
        return dead, still

    def close_scope(self, result: ScopeResult, stats: CallStats) -> None:
        """The scope's final status and what its reading cost; what its pass had seen
        goes (a row of bookkeeping that only lives while the scope is read)."""
        result.retries, result.requests = stats.retries, stats.requests

        def close(conn: sa.Connection) -> None:
            forget_seen(conn, self.run_id, result.scope)
            runs.finish_scope(
                conn, self.run_id, result.scope, result.status, runs.utcnow(),
                retries=stats.retries, retry_after_seconds=round(stats.retry_after_seconds, 3),
                restarts=result.restarts, listings=result.listings, requests=stats.requests,
                error=result.error,
            )

        self.writer.own_row(close)

    def finish(self, status: str, error: str | None, failed: int,
               details: dict[str, int | None] | None = None) -> None:
        """The run's final status, `failed` scopes, what it did with entries' details
        (`sync_runs.details_*`), and the suspects that stayed so long enough to be taken
        for gone."""
        self.finished_at, self.error = runs.utcnow(), error
        dead: list[int] = []
        if self.suspects and self.writer.lost is None:
            try:
                dead, self.suspects = self.dead_runs(self.suspects)
            except sa.exc.SQLAlchemyError:
                pass  # others' bookkeeping: the next run tries again

        def finish(conn: sa.Connection) -> None:
            if dead:
                _abandon(conn, dead, self.finished_at)
            runs.finish_run(conn, self.run_id, status, self.finished_at, scopes_failed=failed,
                            error=error, **(details or {}))

        self.writer.own_row(finish)
        if dead:
            log.warning("run%s %s left running on another host, with a lock free for %.0f s: "
                        "marked abandoned", "s" if len(dead) > 1 else "",
                        ", ".join(f"#{i}" for i in dead), ABANDON_GRACE)

    def stopped(self) -> None:
        """The run's record cannot be finished (the database does not answer): its row
        stays `running`, its locks go with this process, and the next run marks it
        abandoned."""
        self.finished_at = runs.utcnow()

    def ended(self) -> None:
        """This process no longer runs the run."""
        RunRecord.live.discard(self.run_id)
        logcontext.set_run(None)

    def last_success(self) -> float | None:
        """Unix time of the last run of this command that loaded every scope."""
        with self.engine.connect() as conn:
            return runs.last_success(conn, self.command)


def _abandon(conn: sa.Connection, dead: list[int], now: dt.datetime) -> None:
    runs.abandon(conn, dead, now)
    for run in dead:
        forget_seen(conn, run)  # what their passes had seen


def describe_error(exc: BaseException) -> str:
    """What a run or scope records as the reason it failed."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    if isinstance(exc, Interrupted):
        return str(exc)
    if isinstance(exc, AsanaError):
        return exc.message
    if isinstance(exc, EtlError):  # says what happened in its own words
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"

