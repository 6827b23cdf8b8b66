"""Locks per scope: no two runs read or write the same scope at once, and runs over
disjoint scopes share a database (a fanned-out DAG, two workspaces into one warehouse).

A run locks each of its scopes, in sorted order and without waiting; if one is held it
lets go of the others and raises LockError, naming the run that holds it. It holds
them until its row has its final status, so a run's scope locks are free exactly when
the run is over or its process is gone: that is how a run tells a live run from a dead
one before marking it `abandoned` (`ScopeLocks.free`).

- PostgreSQL: session advisory locks, a bigint key per schema and scope, on one
  connection the run keeps (`pg_locks` shows them; the connection's `application_name`
  names the run's process).
- MySQL/MariaDB: `GET_LOCK` per scope, named after the database and the scope, on one
  connection (`performance_schema.metadata_locks`, or `IS_USED_LOCK`).
- SQLite: an exclusive lock on a file per scope in `<database file>.locks/`, which holds
  the holder's description (`flock`; `msvcrt.locking` on Windows).

The operating system or the server releases the locks of a process that dies, so a
crashed run never blocks the next one. Migrations take `schema_lock` (waiting for it),
so that runs starting together on a new database migrate one after the other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from etl.config import Scope
from etl.errors import DatabaseError, LockError
from etl.store.engines import engine_url
from etl.store.schema import sync_run_scopes, sync_runs

LOCK_NAME = "asana-etl"
#: Seconds a run waits for another to finish migrating the schema.
SCHEMA_WAIT = 300.0


def holder_label(command: str) -> str:
    """How this process describes itself to a run that finds one of its locks taken."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"asana-etl {command} pid {os.getpid()} on {socket.gethostname()} since {now}"


class ScopeLocks:
    """The scope locks a run holds, on one backend."""

    #: whether the locks belong to a database session, which the run's writes then use
    #: (see etl.writer): losing it loses the locks and the right to write together
    session_bound = False

    def __init__(self, engine: sa.Engine, label: str) -> None:
        self.engine = engine
        self.label = label
        self.held: list[Scope] = []
        #: the run these locks are for, once it has its row (left out when naming holders)
        self.run_id: int | None = None

    def session(self) -> sa.Connection | None:
        """The connection the run writes on (None: any from the pool)."""
        return None

    def lost(self) -> None:
        """The session's connection failed: take the locks again before the next write."""

    def free(self, scope: Scope) -> bool:
        """Whether no other run holds `scope`: this run holds it, or nobody does."""
        return scope in self.held or self._probe(lock_name(scope))

    def acquire(self, scopes: Sequence[Scope]) -> None:
        """Take every scope's lock, in sorted order, without waiting.

        Raises:
            LockError: one is held by another run (those taken are let go).
        """
        for scope in sorted(set(scopes)):
            if not self._take(lock_name(scope)):
                holder = self._holder(lock_name(scope))
                self.close()
                raise LockError(holder_message(self.engine, scope, holder))
            self.held.append(scope)
        self._acquired()

    def _acquired(self) -> None:
        """Every lock asked for is held."""

    # what each backend provides, for a lock's name
    def _take(self, name: str) -> bool:
        raise NotImplementedError

    def _probe(self, name: str) -> bool:
        raise NotImplementedError

    def _holder(self, name: str) -> str | None:
        return None

    def close(self) -> None:
        raise NotImplementedError


def lock_name(scope: Scope) -> str:
    return f"{scope.kind}-{scope.gid}"


#: The lock migrations hold (not a scope's: those are named kind-gid).
SCHEMA = "schema"


@contextlib.contextmanager
def scope_locks(engine: sa.Engine, scopes: Sequence[Scope], command: str) -> Iterator[ScopeLocks]:
    """Hold the lock of each of `scopes` for the duration of the block.

    Raises:
        LockError: another run holds one of them (the message says which run).
    """
    locks = _backend(engine)(engine, holder_label(command))
    try:
        locks.acquire(scopes)
        yield locks
    finally:
        locks.close()


@contextlib.contextmanager
def schema_lock(engine: sa.Engine, wait: float = SCHEMA_WAIT) -> Iterator[None]:
    """Hold the database's migration lock for the block, waiting for another run's
    migrations to end first (at most `wait` seconds).

    Raises:
        DatabaseError: another process kept migrating for longer than that.
    """
    locks = _backend(engine)(engine, holder_label("migrate"))
    deadline = time.monotonic() + wait
    try:
        while not locks._take(SCHEMA):
            if time.monotonic() > deadline:
                raise DatabaseError("another process has been migrating the schema of "
                                    f"{engine_url(engine)} for "
                                    f"{wait:.0f} s; try again when it is done")
            time.sleep(0.1)
        yield
    finally:
        locks.close()


def _backend(engine: sa.Engine) -> type[ScopeLocks]:
    """The backend's kind of lock (its module imported only when used: each imports
    what only its backend needs)."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        from etl.store.file_locks import FileLocks

        return FileLocks
    if dialect == "postgresql":
        from etl.store.server_locks import AdvisoryLocks

        return AdvisoryLocks
    if dialect == "mysql":
        from etl.store.server_locks import NamedLocks

        return NamedLocks
    raise LockError(f"no run lock for the {dialect} dialect")  # pragma: no cover


def digest(*parts: str) -> bytes:
    """A key for a lock's name: lock keys and names are short on every server."""
    return hashlib.blake2b(":".join(parts).encode(), digest_size=16).digest()


def holder_message(engine: sa.Engine, scope: Scope, holder: str | None,
             own_run: int | None = None) -> str:
    """'another run holds scope user:1: run #12 (sync, pid 4242 on host, started ...)'
    (never `own_run`, the run that asks)."""
    running = None
    try:
        with engine.connect() as conn:
            running = conn.execute(
                sa.select(sync_runs)
                .join(sync_run_scopes, sync_run_scopes.c.run_id == sync_runs.c.id)
                .where(sync_runs.c.status == "running", sync_runs.c.id != (own_run or 0),
                       sync_run_scopes.c.scope_type == scope.kind,
                       sync_run_scopes.c.scope_gid == scope.gid)
                .order_by(sync_runs.c.id.desc())
                .limit(1)
            ).first()
    except sa.exc.SQLAlchemyError:
        pass  # no bookkeeping tables yet: the holder is still migrating
    if running is not None:
        who = (
            f"run #{running.id} ({running.command}, pid {running.pid} on {running.hostname}, "
            f"started {running.started_at:%Y-%m-%dT%H:%M:%S}Z)"
        )
    else:
        who = holder or "a run that has not recorded itself yet"
    return f"another run holds scope {scope}: {who}"
