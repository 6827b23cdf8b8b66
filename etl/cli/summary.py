"""The run summary as a document: the last stdout line with `--log-format json`, and
the file `--summary-file` writes, for an orchestrator to read instead of scraping prose.

A run that started is summarised by its result (`RunResult.document`); one that could
not start (a configuration error, a refused token, a held lock) or was stopped still
gets a document, with its exit code and the reason, so that a caller always finds one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from etl.run.result import SUMMARY_SCHEMA, RunResult
from etl.store.runs import FAILED


def of_error(command: str, exc: BaseException, exit_code: int) -> dict[str, Any]:
    """The summary of a run that ended with `exc`: its result so far if it had started
    (`exc.result`, with the exit code it ends with), else an empty one."""
    result: RunResult | None = getattr(exc, "result", None)
    if result is not None:
        return result.document(exit_code)
    return {
        "schema": SUMMARY_SCHEMA, "run_id": None, "command": command, "status": FAILED,
        "exit_code": exit_code, "entries_seen": 0, "inserted": 0, "updated": 0,
        "unchanged": 0, "deleted": 0, "rejected": 0, "scopes": [], "seconds": 0.0,
        "requests": 0, "retries": 0, "rate_limited": 0, "started_at": None,
        "finished_at": None, "error": str(exc), "details_requests": 0, "details_changed": 0,
        "details_backlog": None, "requests_by_kind": {},
    }


def dumps(document: dict[str, Any]) -> str:
    """One line of JSON."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def write_file(path: str | Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` atomically: a reader sees the old file or the new one,
    never half of one (a temporary file in the same folder, flushed, then renamed)."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(document) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
