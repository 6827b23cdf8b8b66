"""The terminal, when stderr is one (and logs are text): one rich Console that the log
lines and the live progress share.

A log line written to stderr behind the live display's back is overwritten by its next
redraw, or cuts one in half. So on a terminal every log line is printed through the
display's Console, which puts it above the display; and under `Terminal.lock`, which
the display's redraws take too, so that neither ever cuts the other. That covers the
fetcher's records as well: the run's process logs them here, and while a fetcher runs
every line is printed by the thread that orders them (`etl.logorder`).
"""

from __future__ import annotations

import logging
import threading
from typing import TextIO

from rich.console import Console
from rich.text import Text


class Terminal:
    """The Console on the terminal, and the lock every write to it takes."""

    def __init__(self, stream: TextIO) -> None:
        # the stream itself, not stderr=True (sys.stderr looked up at each write)
        self.console = Console(file=stream, highlight=False, markup=False, emoji=False)
        self.lock = threading.RLock()

    def print_line(self, line: str) -> None:
        """Print `line` as it is: no markup (`[run=1 scope=…]` is none), and wrapped by
        the terminal, not at word boundaries, so that it reads and copies as one line."""
        with self.lock:
            self.console.print(Text(line), soft_wrap=True)


class TerminalHandler(logging.Handler):
    """Prints each record, formatted as on any stream, through the `Terminal`."""

    def __init__(self, terminal: Terminal) -> None:
        super().__init__()
        self.terminal = terminal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.terminal.print_line(self.format(record))
        except Exception:
            self.handleError(record)
