"""One run at a time per database.

PostgreSQL: a session advisory lock; MySQL/MariaDB: `GET_LOCK`; SQLite: an exclusive
`flock` on `<database file>.lock` beside the database (SQLite's own locks are per
transaction, and a run spans many). All three are released by the operating system or
the server when the holding process dies, so a crashed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from etl.db import sync_runs
from etl.errors import LockError

LOCK_NAME = "asana-etl"


def holder_label(command: str) -> str:
    """How this process describes itself to a run that finds the lock taken."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"asana-etl {command} pid {os.getpid()} on {socket.gethostname()} since {now}"


@contextlib.contextmanager
def run_lock(engine: sa.Engine, command: str) -> Iterator[None]:
    """Hold the database's run lock for the duration of the block.

    Raises:
        LockError: another run holds it (the message says which, as far as it can tell).
    """
    label = holder_label(command)
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with _file_lock(engine, label):
            yield
    elif dialect == "postgresql":
        with _advisory_lock(engine, label):
            yield
    elif dialect == "mysql":
        with _mysql_lock(engine):
            yield
    else:  # pragma: no cover - make_engine only builds the three above
        raise LockError(f"no run lock for the {dialect} dialect")


@contextlib.contextmanager
def _file_lock(engine: sa.Engine, label: str) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database cannot be shared
        return
    path = Path(database + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1024, 0).decode("utf-8", "replace").strip()
            raise LockError(_message(engine, holder or None)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, label.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _advisory_lock(engine: sa.Engine, label: str) -> Iterator[None]:
    with engine.connect() as conn:
        # advisory locks are per database; key by schema so two deployments in two
        # schemas of one database do not block each other
        schema = conn.scalar(sa.text("SELECT current_schema()"))
        key = zlib.crc32(f"{LOCK_NAME}:{schema}".encode()) & 0x7FFFFFFF
        conn.execute(sa.text("SELECT set_config('application_name', :label, false)"),
                     {"label": label[:63]})
        if not conn.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
            holder = conn.scalar(
                sa.text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = 0 AND l.objid = :key LIMIT 1"
                ),
                {"key": key},
            )
            conn.rollback()
            raise LockError(_message(engine, holder))
        conn.commit()  # the lock is session-level: it outlives this transaction
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


@contextlib.contextmanager
def _mysql_lock(engine: sa.Engine) -> Iterator[None]:
    with engine.connect() as conn:
        name = conn.scalar(sa.text("SELECT CONCAT(:prefix, DATABASE())"),
                           {"prefix": f"{LOCK_NAME}:"})[:64]
        if conn.scalar(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name}) != 1:
            holder = conn.scalar(sa.text("SELECT IS_USED_LOCK(:name)"), {"name": name})
            conn.rollback()
            raise LockError(_message(engine, f"connection {holder}" if holder else None))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            conn.commit()


def _message(engine: sa.Engine, holder: str | None) -> str:
    """'another run holds the lock: run #12 (sync, pid 4242 on host, started ...)'."""
    running = None
    try:
        with engine.connect() as conn:
            running = conn.execute(
                sa.select(sync_runs)
                .where(sync_runs.c.status == "running")
                .order_by(sync_runs.c.id.desc())
                .limit(1)
            ).first()
    except sa.exc.SQLAlchemyError:
        pass  # no bookkeeping tables yet: the holder is still migrating
    if running is not None:
        who = (
            f"run #{running.id} ({running.command}, pid {running.pid} on {running.hostname}, "
            f"started {running.started_at:%Y-%m-%d %H:%M:%S}Z)"
        )
    else:
        who = holder or "a run that has not recorded itself yet"
    return f"another run holds the lock on this database: {who}"
