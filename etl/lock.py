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
- SQLite: an exclusive `flock` on a file per scope in `<database file>.locks/`, which
  holds the holder's description.

The operating system or the server releases the locks of a process that dies, so a
crashed run never blocks the next one. Migrations take `schema_lock` (waiting for it),
so that runs starting together on a new database migrate one after the other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

from etl.config import Scope
from etl.db import engine_url, sync_run_scopes, sync_runs
from etl.errors import DatabaseError, LockError

LOCK_NAME = "asana-etl"
#: Seconds a run waits for another to finish migrating the schema.
SCHEMA_WAIT = 300.0


def holder_label(command: str) -> str:
    """How this process describes itself to a run that finds one of its locks taken."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"asana-etl {command} pid {os.getpid()} on {socket.gethostname()} since {now}"


class StaleSession(Exception):
    """The run's old lock session, whose connection was lost, still holds a lock on the
    server (which has not noticed yet): try again shortly."""


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
        return scope in self.held or self._probe(_name(scope))

    def acquire(self, scopes: Sequence[Scope]) -> None:
        """Take every scope's lock, in sorted order, without waiting.

        Raises:
            LockError: one is held by another run (those taken are let go).
        """
        for scope in sorted(set(scopes)):
            if not self._take(_name(scope)):
                holder = self._holder(_name(scope))
                self.close()
                raise LockError(_message(self.engine, scope, holder))
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


def _name(scope: Scope) -> str:
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
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return _FileLocks
    if dialect == "postgresql":
        return _AdvisoryLocks
    if dialect == "mysql":
        return _NamedLocks
    raise LockError(f"no run lock for the {dialect} dialect")  # pragma: no cover


def _digest(*parts: str) -> bytes:
    """A key for a lock's name: lock keys and names are short on every server."""
    return hashlib.blake2b(":".join(parts).encode(), digest_size=16).digest()


class _FileLocks(ScopeLocks):
    """SQLite: an flock on `<database>.locks/<kind>-<gid>.lock` per scope. flock
    belongs to an open file, so two runs in one process exclude each other too."""

    def __init__(self, engine: sa.Engine, label: str) -> None:
        super().__init__(engine, label)
        database = engine.url.database
        self.folder = None
        if database and database != ":memory:":  # a private in-memory database: no lock
            self.folder = Path(database + ".locks")
            self.folder.mkdir(exist_ok=True)
        self.fds: dict[str, int] = {}

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.lock"

    def _take(self, name: str) -> bool:
        if self.folder is None:
            return True
        fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.label.encode(), 0)
        self.fds[name] = fd
        return True

    def _probe(self, name: str) -> bool:
        if self.folder is None:
            return True
        try:
            fd = os.open(self._path(name), os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # and with it the shared lock, if it was taken

    def _holder(self, name: str) -> str | None:
        with contextlib.suppress(OSError):
            return self._path(name).read_text("utf-8", "replace").strip() or None
        return None

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # releases the flock
        self.fds.clear()
        self.held.clear()


class _ServerLocks(ScopeLocks):
    """Locks a database server holds for a session: the run keeps one connection."""

    session_bound = True

    def __init__(self, engine: sa.Engine, label: str) -> None:
        super().__init__(engine, label)
        self.conn: sa.Connection | None = None
        self.broken = False
        #: how `_holder` names this session on the server, and the session holding our
        #: locks (the two differ while a lost session is being replaced)
        self.identity: str | None = None
        self.holding: str | None = None
        #: why this run may write no more: another run took one of its scopes
        self.taken_over: LockError | None = None

    def _connection(self) -> sa.Connection:
        if self.conn is None:
            self.conn = self.engine.connect()
            self._opened(self.conn)
            self.conn.commit()
        return self.conn

    def session(self) -> sa.Connection:
        if self.taken_over is not None:
            raise self.taken_over
        if self.broken:
            self._retake()
        return self._connection()

    def lost(self) -> None:
        self.broken = True

    def _acquired(self) -> None:
        self.holding = self.identity

    def _end_session(self, identity: str) -> None:
        """End our own lost session on the server, which has not noticed that its client
        is gone (a half-open connection): its locks are free at once, not when the
        server's keepalive finds out. Best effort: without the right, we wait."""

    def _retake(self) -> None:
        """A new session, holding every scope this run held.

        Raises:
            LockError: another run took one meanwhile (this run holds none any more).
            StaleSession: our lost session still holds one (none is held for now).
            sqlalchemy.exc.DBAPIError: the server cannot be reached (none is held).
        """
        old, self.conn = self.conn, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.invalidate()
                old.close()
        previous, scopes = self.holding, list(self.held)
        self.held = []
        try:
            for scope in scopes:
                if self._take(_name(scope)):
                    self.held.append(scope)
                    continue
                holder = self._holder(_name(scope))
                if holder is not None and holder == previous:
                    self._release_all()
                    self.conn.commit()
                    self._end_session(holder)
                    raise StaleSession()
                message = _message(self.engine, scope, holder, self.run_id)
                self.close()
                scopes = []
                self.taken_over = LockError(f"this run's lock connection was lost, and {message}; "
                                            "this run stopped before writing more")
                raise self.taken_over
        finally:
            if self.held != scopes:  # not all of them again: none, until the next try
                self.held = scopes
                if self.conn is not None:
                    with contextlib.suppress(Exception):
                        self.conn.invalidate()
                        self.conn.close()
                    self.conn = None
        self.broken = False
        self.holding = self.identity

    def _opened(self, conn: sa.Connection) -> None:
        pass

    def _scalar(self, sql: str, **params: object) -> object:
        conn = self._connection()
        value = conn.scalar(sa.text(sql), params)
        conn.commit()  # session locks outlive the transaction; hold no snapshot
        return value

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._release_all()
                self.conn.commit()
            self.conn.close()
            self.conn = None
        self.held.clear()

    def _release_all(self) -> None:
        raise NotImplementedError


class _AdvisoryLocks(_ServerLocks):
    """PostgreSQL: a session advisory lock per scope, keyed by schema and scope."""

    def _opened(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT set_config('application_name', :label, false)"),
                     {"label": self.label[:63]})
        self.identity = self.label[:63]
        self.schema = conn.scalar(sa.text("SELECT current_schema()"))

    def _key(self, name: str) -> int:
        self._connection()
        return int.from_bytes(_digest(LOCK_NAME, self.schema, name)[:8], "big", signed=True)

    def _take(self, name: str) -> bool:
        return bool(self._scalar("SELECT pg_try_advisory_lock(:key)", key=self._key(name)))

    #: The granted advisory lock of a key in this database (a bigint key shows in
    #: pg_locks as classid, its high half, and objid, with objsubid 1).
    _HELD = ("FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = "
             "'advisory' AND l.granted AND l.objsubid = 1 AND l.classid::bigint = :high AND "
             "l.objid::bigint = :low AND l.database = (SELECT oid FROM pg_database WHERE "
             "datname = current_database())")

    def _key_halves(self, name: str) -> dict[str, int]:
        key = self._key(name) & 0xFFFFFFFFFFFFFFFF
        return {"high": key >> 32, "low": key & 0xFFFFFFFF}

    def _probe(self, name: str) -> bool:
        # looked up, not taken and let go: a run starting that instant must not find it held
        return not self._scalar(f"SELECT EXISTS (SELECT 1 {self._HELD})", **self._key_halves(name))

    def _holder(self, name: str) -> str | None:
        return self._scalar(f"SELECT a.application_name {self._HELD} LIMIT 1",
                            **self._key_halves(name))

    def _end_session(self, identity: str) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self._scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                         "application_name = :label AND pid <> pg_backend_pid()", label=identity)

    def _release_all(self) -> None:
        self.conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))


class _NamedLocks(_ServerLocks):
    """MySQL/MariaDB: a `GET_LOCK` per scope, named after the database and the scope
    (a digest: lock names hold 64 characters)."""

    def _opened(self, conn: sa.Connection) -> None:
        self.database = conn.scalar(sa.text("SELECT DATABASE()")) or ""
        self.identity = f"connection {conn.scalar(sa.text('SELECT CONNECTION_ID()'))}"
        self.taken: list[str] = []

    def _server_name(self, name: str) -> str:
        self._connection()
        return f"{LOCK_NAME}:" + _digest(self.database, name).hex()[:40]

    def _take(self, name: str) -> bool:
        server_name = self._server_name(name)
        if self._scalar("SELECT GET_LOCK(:name, 0)", name=server_name) != 1:
            return False
        self.taken.append(server_name)
        return True

    def _probe(self, name: str) -> bool:
        return self._scalar("SELECT IS_FREE_LOCK(:name)", name=self._server_name(name)) == 1

    def _holder(self, name: str) -> str | None:
        holder = self._scalar("SELECT IS_USED_LOCK(:name)", name=self._server_name(name))
        return f"connection {holder}" if holder else None

    def _end_session(self, identity: str) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            self._connection().exec_driver_sql(f"KILL {int(identity.split()[-1])}")
            self.conn.commit()

    def _release_all(self) -> None:
        for server_name in self.taken:
            self.conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": server_name})
        self.taken.clear()


def _message(engine: sa.Engine, scope: Scope, holder: str | None,
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
