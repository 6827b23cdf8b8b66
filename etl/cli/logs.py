"""Log lines on stderr, as text or one JSON object a line, each with the run and scope
it concerns; on a terminal, through the `Terminal` the live progress shares. In either
format and on a terminal, a run's lines come in the order of their times, the fetcher
process's among them (`etl.logorder`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from etl.logcontext import ContextFilter
from etl.logorder import OrderedHandler

if TYPE_CHECKING:
    from etl.cli.console import Terminal


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event, message, and the record's
    structured `fields` (passed as `extra={"event": ..., "fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "scope": getattr(record, "scope", None),
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        return json.dumps(line, ensure_ascii=False, default=iso_default)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            part for part in (
                f"run={record.run_id}" if getattr(record, "run_id", None) else "",
                f"scope={record.scope}" if getattr(record, "scope", None) else "",
            ) if part
        )
        text = super().format(record)
        return f"{text} [{context}]" if context else text


def setup_logging(level: str, fmt: str) -> Terminal | None:
    """Log lines to stderr, in the order of their times; on a terminal (text logs only),
    through the `Terminal` that the live progress shares (returned), so that they scroll
    above it whole."""
    terminal = None
    if fmt == "text" and sys.stderr.isatty():
        from etl.cli.console import Terminal, TerminalHandler

        terminal = Terminal(sys.stderr)
    writer = logging.StreamHandler(sys.stderr) if terminal is None else TerminalHandler(terminal)
    if fmt == "json":
        writer.setFormatter(_JsonFormatter())
    else:
        writer.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler = OrderedHandler(writer)
    handler.addFilter(ContextFilter())  # in the thread that logs: the scope is its own
    root = logging.getLogger("etl")
    for previous in root.handlers:  # an earlier command's, in this process
        if isinstance(previous, OrderedHandler):
            previous.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return terminal


def iso_default(value: Any) -> str:
    """JSON for what json cannot say itself: dates and timestamps as ISO 8601."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)
