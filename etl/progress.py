"""Live progress on a terminal for `sync` and `backfill` (rich), and nothing elsewhere.

The API gives no totals, so this shows what is honest: scopes done of total, entries
and pages so far, entries per second, retries; no percentage.
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from etl import runs
from etl.pipeline import ScopeResult

#: Scopes shown one per line; beyond that, only the ones in progress.
MAX_LINES = 12


class TerminalProgress:
    """A `progress` callback for run_sync that redraws a small table a few times a second."""

    def __init__(self, stream: TextIO, title: str) -> None:
        self.console = Console(file=stream, stderr=True)
        self.title = title
        self.started = time.monotonic()
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> TerminalProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def __call__(self, scopes: list[ScopeResult], retries: int) -> None:
        self.live.update(self.render(scopes, retries))

    def render(self, scopes: list[ScopeResult], retries: int) -> Table:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        entries = sum(s.counts.entries for s in scopes)
        done = sum(s.status != runs.RUNNING for s in scopes)
        failed = sum(s.status == runs.FAILED for s in scopes)
        table = Table(
            title=f"{self.title}: {done}/{len(scopes)} scopes"
            f"{f' ({failed} failed)' if failed else ''}, {entries:,} entries, "
            f"{entries / elapsed:,.0f}/s, {retries} retries, {elapsed:,.0f} s",
            title_justify="left", box=None, show_header=True,
        )
        for column in ("scope", "status", "pages", "entries", "new", "changed", "deleted"):
            table.add_column(column, justify="left" if column in ("scope", "status") else "right")
        active = [s for s in scopes if s.status == runs.RUNNING and s.pages]
        shown = scopes if len(scopes) <= MAX_LINES else active[:MAX_LINES]
        for s in shown:
            c = s.counts
            table.add_row(str(s.scope), s.status, str(s.pages), f"{c.entries:,}",
                          f"{c.inserted:,}", f"{c.updated:,}", f"{c.deleted:,}")
        return table
