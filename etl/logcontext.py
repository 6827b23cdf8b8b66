"""What every log line should carry: the run it belongs to and the scope being worked on.

The run id is process-wide (one run at a time); the scope is per thread, as each worker
lists one scope at a time. `ContextFilter` stamps both on every record. A fetcher
process's records have no run id of their own: they take that of the run begun while it
ran (`runs_begun`; see `etl.logorder`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

_run_id: int | None = None
_begun: tuple[int, int | None] = (0, None)
_local = threading.local()


def set_run(run_id: int | None) -> None:
    global _run_id, _begun
    _run_id = run_id
    if run_id is not None:
        _begun = (_begun[0] + 1, run_id)


def runs_begun() -> tuple[int, int | None]:
    """How many runs this process has begun, and the id of the last one."""
    return _begun


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
