"""asana-etl: keep a SQL database in sync with Asana's time tracking entries.

The Python API, for orchestrators that call it rather than the command line:

    from etl import load_settings, run_sync

    if __name__ == "__main__":  # needed where the fetcher process starts by spawn
        result = run_sync(load_settings("config.toml"), recent_days=30)
        print(result.status, result.inserted, result.updated)

`run_sync` and `run_backfill` return a `RunResult` (its fields are the run summary's:
`RunResult.document()`); a failed scope is in its result, not an exception. What they
raise, and the exit code the command line gives for it: `ConfigError` 2 (also a
`DatabaseError` that stops a run before it starts), `AuthError` 3, `LockError` 4,
`DatabaseFailed` 5 (the database failed during the run), `Interrupted` 128 + the signal. Every exception of the tool is an `EtlError`, but for
`Interrupted`, which like `KeyboardInterrupt` is a `BaseException`.

The names are imported when first used, so that `import etl` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: name -> the module it comes from
_API = {
    "load_settings": "etl.config",
    "Settings": "etl.config",
    "Scope": "etl.config",
    "DateWindow": "etl.config",
    "run_sync": "etl.run.pipeline",
    "run_backfill": "etl.run.pipeline",
    "RunResult": "etl.run.result",
    "ScopeResult": "etl.run.result",
    "EtlError": "etl.errors",
    "ConfigError": "etl.errors",
    "DatabaseError": "etl.errors",
    "DatabaseFailed": "etl.errors",
    "FetcherDied": "etl.errors",
    "AsanaError": "etl.errors",
    "AuthError": "etl.errors",
    "LockError": "etl.errors",
    "Interrupted": "etl.errors",
    "ExitCode": "etl.errors",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from etl.config import DateWindow, Scope, Settings, load_settings
    from etl.errors import (
        AsanaError,
        AuthError,
        ConfigError,
        DatabaseError,
        DatabaseFailed,
        EtlError,
        ExitCode,
        FetcherDied,
        Interrupted,
        LockError,
    )
    from etl.run.pipeline import run_backfill, run_sync
    from etl.run.result import RunResult, ScopeResult


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'etl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
