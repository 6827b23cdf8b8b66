"""What every log line should carry: the run it belongs to and the scope being worked on.

The run id is process-wide (one run at a time); the scope is per thread, as each worker
lists one scope at a time. `ContextFilter` stamps both on every record.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

_run_id: int | None = None
_local = threading.local()


def set_run(run_id: int | None) -> None:
    global _run_id
    _run_id = run_id


@contextlib.contextmanager
def scope_context(scope: object) -> Iterator[None]:
    previous = getattr(_local, "scope", None)
    _local.scope = str(scope)
    try:
        yield
    finally:
        _local.scope = previous


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = _run_id
        if not hasattr(record, "scope"):
            record.scope = current_scope()
        return True


def current_scope() -> str | None:
    """The scope this thread works on, if any."""
    return getattr(_local, "scope", None)
