"""Log lines on stderr, as text or one JSON object a line, each with the run and scope
it concerns; on a terminal, through the `Terminal` the live progress shares.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from etl.logcontext import ContextFilter

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
    """Log lines to stderr; on a terminal (text logs only), through the `Terminal` that
    the live progress shares (returned), so that they scroll above it whole."""
    terminal = None
    if fmt == "text" and sys.stderr.isatty():
        from etl.cli.console import Terminal, TerminalHandler

        terminal = Terminal(sys.stderr)
    handler = logging.StreamHandler(sys.stderr) if terminal is None else TerminalHandler(terminal)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("etl")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return terminal


def iso_default(value: Any) -> str:
    """JSON for what json cannot say itself: dates and timestamps as ISO 8601."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)
