"""PostgreSQL's and MySQL/MariaDB's scope locks: held by the server for one database
session, which the run keeps (and writes through: see `etl.run.writer`).

- PostgreSQL: session advisory locks, a bigint key per schema and scope (`pg_locks`
  shows them; the session's `application_name` names the run's process).
- MySQL/MariaDB: `GET_LOCK` per scope, named after the database and the scope
  (`performance_schema.metadata_locks`, or `IS_USED_LOCK`).

A session whose connection is lost loses its locks with it; `ServerLocks.session` takes
them again before the next write, or says that another run took one.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa

from etl.errors import LockError
from etl.store.lock import LOCK_NAME, ScopeLocks, digest, holder_message, lock_name


class StaleSession(Exception):
    """The run's old lock session, whose connection was lost, still holds a lock on the
    server (which has not noticed yet): try again shortly."""



class ServerLocks(ScopeLocks):
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
                if self._take(lock_name(scope)):
                    self.held.append(scope)
                    continue
                holder = self._holder(lock_name(scope))
                if holder is not None and holder == previous:
                    self._release_all()
                    self.conn.commit()
                    self._end_session(holder)
                    raise StaleSession()
                message = holder_message(self.engine, scope, holder, self.run_id)
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


class AdvisoryLocks(ServerLocks):
    """PostgreSQL: a session advisory lock per scope, keyed by schema and scope."""

    def _opened(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT set_config('application_name', :label, false)"),
                     {"label": self.label[:63]})
        self.identity = self.label[:63]
        self.schema = conn.scalar(sa.text("SELECT current_schema()"))

    def _key(self, name: str) -> int:
        self._connection()
        return int.from_bytes(digest(LOCK_NAME, self.schema, name)[:8], "big", signed=True)

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


class NamedLocks(ServerLocks):
    """MySQL/MariaDB: a `GET_LOCK` per scope, named after the database and the scope
    (a digest: lock names hold 64 characters)."""

    def _opened(self, conn: sa.Connection) -> None:
        self.database = conn.scalar(sa.text("SELECT DATABASE()")) or ""
        self.identity = f"connection {conn.scalar(sa.text('SELECT CONNECTION_ID()'))}"
        self.taken: list[str] = []

    def _server_name(self, name: str) -> str:
        self._connection()
        return f"{LOCK_NAME}:" + digest(self.database, name).hex()[:40]

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
