"""Engines: one place that turns a database URL into an engine this tool can rely on,
and says in one line, password masked, why a URL or a server cannot be used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from etl.errors import DatabaseError
from etl.store import database_url
from etl.transform import CanonicalJSON

DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql"}


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`, safe to print."""
    return database_url.masked(url)


def engine_url(engine: Engine) -> str:
    """The engine's URL, safe to print."""
    return mask_url(engine.url.render_as_string(hide_password=False))


def _json_serializer(value: Any) -> str:
    if isinstance(value, CanonicalJSON):
        return value  # serialised once already, by the transformer
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def make_engine(url: str) -> Engine:
    """An engine for `url`, with the settings this tool relies on.

    Raises:
        DatabaseError: the URL cannot be used (malformed, an unknown kind, its driver not
            installed): one line, the password masked, the corrected URL where one is
            obvious and the extra to install.
    """
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        driver = parsed.get_driver_name()
    except sa.exc.NoSuchModuleError:  # (an ArgumentError too)
        raise _unusable(url, f"no database kind is called {url.split(':', 1)[0]!r}") from None
    except sa.exc.ArgumentError:
        raise _unusable(url, "it is not a database URL") from None
    except ValueError:  # host:5432x
        raise _unusable(url, "its port is not a number") from None
    kwargs: dict[str, Any] = {"json_serializer": _json_serializer}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    if driver == "psycopg":
        # No server-side prepared statements: after a few runs PostgreSQL would switch
        # the loader's `gid = ANY(:gids)` lookups to a generic plan that scans the array
        # linearly for every row (10x slower than the custom plan's hashed lookup).
        kwargs["connect_args"] = {"prepare_threshold": None}
    try:
        # hide_parameters: no bound value (an entry's contents) in any error message
        engine = sa.create_engine(parsed, hide_parameters=True, **kwargs)
    except ModuleNotFoundError as exc:
        raise _unusable(url, f"its driver ({exc.name}) is not installed",
                        DRIVER_EXTRAS.get((exc.name or "").split(".")[0])) from None
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError) as exc:
        reason = str(exc).splitlines()[0]
        if backend == "sqlite":
            reason = ("a SQLite URL takes three slashes before a relative path, four before "
                      "an absolute one")
        raise _unusable(url, reason) from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _unusable(url: str, reason: str, extra: str | None = None) -> DatabaseError:
    """The one line that says why `url` cannot be used, and what to write instead."""
    fix = database_url.corrected(url)
    if fix is not None:
        scheme = fix.split(":", 1)[0]
        extra = {"postgresql+psycopg": "postgres", "mysql+pymysql": "mysql"}.get(scheme, extra)
        reason += f"; use {mask_url(fix)}"
    if extra:
        reason += f" (the driver comes with: pip install 'asana-etl[{extra}]')"
    return DatabaseError(f"cannot use the database URL {mask_url(url)}: {reason}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # a new file's pages: 8 KiB, where a sync of 100,000 entries spent a fifth less time
    # in SQLite than with the default 4 KiB (fewer pages written at each commit); a file
    # that exists keeps its own (this must come before WAL, which fixes it)
    cursor.execute("PRAGMA page_size=8192")
    # WAL lets a BI tool read while a sync writes
    cursor.execute("PRAGMA journal_mode=WAL")
    # in WAL mode, NORMAL syncs the log to disk at checkpoints, not at every commit (a
    # fsync at each scope's end and each batch was a sixth of a small first sync): a
    # crash of the process loses nothing; one of the machine may lose the last
    # transactions, never consistency, and the next run reads again what they held
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sqlite_folder_problem(database: str) -> str | None:
    """Why SQLite could not make or open the file `database` in its folder, when it is the
    folder's fault: missing, or not writable by this user (SQLite writes its -wal and
    -shm files next to the database, even to read it)."""
    folder = Path(database).resolve().parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"the folder {folder} is not writable by this user (SQLite writes its -wal "
                "and -shm files next to the database, even to read it)")
    if Path(database).exists() and not os.access(database, os.R_OK | os.W_OK):
        return f"the file {database} is not readable and writable by this user"
    return None


def check_connection(engine: Engine) -> None:
    """Connect once, turning any failure into a DatabaseError with the password masked."""
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc.__class__.__name__).splitlines()[0]
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            reason = sqlite_folder_problem(database) or reason
        written = engine.url.render_as_string(hide_password=False)
        for secret in [*database_url.secrets(written), str(engine.url.password or "")]:
            if secret:
                reason = reason.replace(secret, "***")
        host = engine.url.host or ""
        if "@" in host:  # a password's unescaped @: its tail was taken for the host
            reason = reason.replace(host, "***@" + host.rsplit("@", 1)[1])
        raise DatabaseError(
            f"cannot connect to {engine_url(engine)}: {reason}"
        ) from None

