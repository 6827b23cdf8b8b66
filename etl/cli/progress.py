"""Live progress on a terminal for `sync`, `backfill` and `demo` (rich), and nothing
elsewhere.

The API gives no totals, so this shows what is honest: scopes done of total, entries so
far, entries per second, retries; no percentage. Below that line come the scopes still
running, those with the most pages read first (the ones the run will wait for), as many
as fit the terminal's height, then how many more there are: a frame taller than the
terminal cannot be redrawn in place and piles up on screen.

Log lines scroll above the display (see `etl.console`). The display is transient: when
it ends it is erased, and its last state printed once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.live import Live
from rich.segment import SegmentLines
from rich.table import Table
from rich.text import Text

from etl.cli.console import Terminal
from etl.run.result import ScopeResult
from etl.store import runs

#: Redraws a second: what keeps the elapsed time moving while no batch comes.
REFRESH_PER_SECOND = 4
#: Terminal rows the frame leaves free: the title's, and one to spare (for the prompt
#: line of a shell that shares the screen, or a terminal resized under the frame).
RESERVED_ROWS = 2
COLUMNS = ("scope", "pages", "entries", "new", "changed", "deleted", "running")


@dataclass(frozen=True)
class _Row:
    """One running scope, as the run last reported it."""

    scope: str
    pages: int
    entries: int
    inserted: int
    updated: int
    deleted: int
    since: float | None  # when its first page came (monotonic)


@dataclass(frozen=True)
class _State:
    """What the run last reported: immutable, so that a redraw on the display's thread
    never sees it half-updated by the run's."""

    total: int = 0
    done: int = 0
    failed: int = 0
    entries: int = 0
    retries: int = 0
    details: int = 0  # entries whose details were read
    running: tuple[_Row, ...] = ()


class TerminalProgress:
    """A `progress` callback for run_sync that shows the run live on the `Terminal`.

    The display is redrawn by a thread of its own, under the terminal's lock, so that
    redraws and log lines take turns; rich's own refresh thread would not take it.
    """

    def __init__(self, terminal: Terminal, title: str) -> None:
        self.terminal = terminal
        self.title = title
        self.started = time.monotonic()
        self.state = _State()
        self.first_page: dict[str, float] = {}
        # sys.stdout and sys.stderr stay as they are: the fetcher process is forked while
        # the display runs, and would inherit a proxy that draws it (and takes its locks)
        self.live = Live(console=terminal.console, get_renderable=self.frame,
                         auto_refresh=False, transient=True, redirect_stdout=False,
                         redirect_stderr=False)
        self._stopped = threading.Event()
        self._redraws = threading.Thread(target=self._redraw, name="progress", daemon=True)

    def __enter__(self) -> TerminalProgress:
        with self.terminal.lock:
            self.live.start(refresh=True)
        self._redraws.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._redraws.join()
        with self.terminal.lock:
            self.live.stop()
            self.terminal.console.print(self.frame())

    def __call__(self, scopes: list[ScopeResult], retries: int, details: int = 0) -> None:
        self.state = self._snapshot(scopes, retries, details)

    def _redraw(self) -> None:
        """Redraw until told to stop, between log lines (under the terminal's lock)."""
        while not self._stopped.wait(1 / REFRESH_PER_SECOND):
            with self.terminal.lock:
                self.live.refresh()

    def _snapshot(self, scopes: list[ScopeResult], retries: int, details: int) -> _State:
        """The run as reported, its running scopes most pages first, then longest
        running: the largest, that the run will wait for."""
        now = time.monotonic()
        running = []
        for s in scopes:
            if s.pages:
                self.first_page.setdefault(str(s.scope), now)
            if s.status == runs.RUNNING:
                c = s.counts
                running.append(_Row(str(s.scope), s.pages, c.entries, c.inserted, c.updated,
                                    c.deleted, self.first_page.get(str(s.scope))))
        running.sort(key=lambda r: (-r.pages, r.since or now, r.scope))
        return _State(
            total=len(scopes), done=len(scopes) - len(running),
            failed=sum(s.status == runs.FAILED for s in scopes),
            entries=sum(s.counts.entries for s in scopes), retries=retries, details=details,
            running=tuple(running),
        )

    def frame(self) -> SegmentLines:
        """The overall line, then as many running scopes as the terminal's height lets;
        laid out once a redraw: every log line printed above it draws it again, and
        laying the table out again each time (8 ms) would hold up the run's thread."""
        state, now = self.state, time.monotonic()
        console = self.terminal.console
        title = Text(f"{self.title}: {_overall(state, now - self.started)}", no_wrap=True,
                     overflow="ellipsis")
        shown, more = _fit(state.running, console.size.height - RESERVED_ROWS)
        parts: list[RenderableType] = [title]
        if shown:
            parts.append(_table(shown, now))
        if more:
            parts.append(Text(f"… and {more} more running", no_wrap=True, overflow="ellipsis"))
        return SegmentLines(console.render_lines(Group(*parts), pad=False), new_lines=True)


def _overall(state: _State, elapsed: float) -> str:
    """The run in one line; before its first report (preflight, locks, migrations) it
    has no scopes to count yet."""
    if not state.total:
        return f"starting, {elapsed:,.0f} s"
    failed = f" ({state.failed} failed)" if state.failed else ""
    details = f"{state.details:,} details, " if state.details else ""
    return (f"{state.done}/{state.total} scopes{failed}, {state.entries:,} entries, "
            f"{state.entries / max(elapsed, 1e-6):,.0f}/s, {details}{state.retries} retries, "
            f"{elapsed:,.0f} s")


def _fit(running: tuple[_Row, ...], room: int) -> tuple[tuple[_Row, ...], int]:
    """The rows that fit in `room` lines, with the table's header and, if some are left
    out, the "… and N more" line; and how many are left out."""
    if len(running) + 1 <= room:
        return running, 0
    if room < 1:
        return (), 0
    shown = max(room - 2, 0)
    return running[:shown], len(running) - shown


def _table(rows: tuple[_Row, ...], now: float) -> Table:
    """One line a scope: cells are cut, never wrapped, so that the frame is as tall as
    `_fit` counted."""
    table = Table(box=None, show_header=True, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "scope" else "right",
                         no_wrap=True, overflow="ellipsis")
    for r in rows:
        running = "" if r.since is None else f"{now - r.since:,.0f} s"
        table.add_row(r.scope, str(r.pages), f"{r.entries:,}", f"{r.inserted:,}",
                      f"{r.updated:,}", f"{r.deleted:,}", running)
    return table
