"""Where a run's writes go: one transaction at a time, on the connection that holds its
scope locks, written again after a blip, never after its lock was lost.

On PostgreSQL and MySQL/MariaDB a run's scope locks belong to a database session
(`lock.ScopeLocks.session`), and every write of the run goes through that same session.
So the lock and the right to write end together: if the connection goes away (a proxy
restart, an idle timeout, a failover), the transaction in flight rolls back with it and
the server frees the locks at that moment. The run notices at its next write or lock
check (every CHECK_SECONDS), opens a new session and takes its locks again: if they are
still free it goes on; if another run took one, it stops before writing anything more
(LockError, exit 4). No two runs ever write the same scope at once. On SQLite the locks
are files, which no connection can lose.

What the server says is sorted here too: a deadlock or lock timeout is a reason to write
the batch again; a connection that cannot be had again within RECONNECT_SECONDS, a full
disk and every other server failure end the run as DatabaseFailed (exit 5), in one line
that names the database and the cause; a value the database refuses is RowRefused, for
the loader to set the row aside.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from etl.store.engines import engine_url
from etl.errors import DatabaseFailed, LockError
from etl.store.lock import ScopeLocks
from etl.store.server_locks import StaleSession

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts at a batch that a concurrent run's transaction made the server give up on.
CONTENDED_ATTEMPTS = 5
#: How long a run keeps trying to get its connection back before it gives up (exit 5).
RECONNECT_SECONDS = 8.0
#: Seconds between two checks that the lock connection is alive, while nothing is written.
CHECK_SECONDS = 2.0

#: Deadlocks, lock waits given up, a concurrent insert of the same key.
_CONTENDED_SQLSTATES = {"40P01", "40001", "55P03", "23505"}
_CONTENDED_ERRNOS = {1213, 1205, 1062}
#: The connection is gone, or the server is going away (sqlstate classes, MySQL codes).
_GONE_SQLSTATE_PREFIXES = ("08", "57P")
_GONE_ERRNOS = {1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
#: The disk or a quota is full.
_FULL_SQLSTATES = {"53100", "53200", "53400"}
_FULL_ERRNOS = {1021, 1114, 3}
#: A value the column or a constraint refuses: data exceptions, integrity violations.
_REFUSED_SQLSTATE_PREFIXES = ("22", "23")
_REFUSED_ERRNOS = {1048, 1264, 1292, 1366, 1406, 1452, 3140, 3819, 4025}


class RowRefused(Exception):
    """The database refused a value of the batch (too long, out of range, a constraint):
    `reason` is its message's first line, which holds no value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Writer:
    """A run's transactions (see the module's docstring)."""

    def __init__(self, engine: sa.Engine, locks: ScopeLocks,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.locks = locks
        self.sleep = sleep
        self.checked = time.monotonic()
        #: set once another run took one of ours: from then on only our own row is written
        self.lost: LockError | None = None

    def transaction(self, write: Callable[[sa.Connection], T], refusable: bool = False) -> T:
        """`write` in one transaction, on the lock session, committed; again from the
        start after a deadlock or a dropped connection.

        Raises:
            LockError: the lock session was lost and another run took one of our scopes.
            RowRefused: with `refusable`, the database refused a value (nothing was
                written); without, that is a DatabaseFailed.
            DatabaseFailed: anything else the database did (nothing was written).
        """
        contended = reconnects = 0
        gone_since: float | None = None
        while True:
            try:
                value = self._once(write)
                self.checked = time.monotonic()
                return value
            except LockError as exc:
                self.lost = exc
                raise
            except StaleSession:
                kind, exc = "gone", None  # our old session still holds the locks: wait
            except _Unreachable as unreachable:
                kind, exc = "gone", unreachable.__cause__
            except sa.exc.DBAPIError as error:
                kind, exc = classify(error), error
            except self.engine.dialect.loaded_dbapi.Error as raw:  # from the driver itself
                exc = self._wrapped(raw)  # (PostgreSQL's COPY)
                kind = classify(exc)
            if kind == "contended" and contended < CONTENDED_ATTEMPTS - 1:
                contended += 1
                log.info("batch written again after %s (attempt %d)", describe(exc), contended)
                self.sleep(0.05 * 2 ** contended)
                continue
            if kind == "gone":
                now = time.monotonic()
                if gone_since is None:
                    gone_since = now
                    log.warning("lost the connection to %s (%s): connecting again",
                                self._where(), describe(exc) if exc is not None else "stale session")
                if now - gone_since < RECONNECT_SECONDS:
                    self.locks.lost()
                    # the server's time, not the test's: a real wait
                    time.sleep(min(1.0, 0.05 * 2 ** reconnects))
                    reconnects += 1
                    continue
            if kind == "refused" and refusable:
                raise RowRefused(describe(exc)) from exc
            raise self.failure(exc, kind) from exc

    def own_row(self, write: Callable[[sa.Connection], T]) -> T:
        """`write` (this run's own bookkeeping: its row, its scopes' rows) even after its
        lock was lost; one attempt.

        Raises:
            DatabaseFailed: the database did not take it.
        """
        if self.lost is None:
            try:
                return self.transaction(write)
            except LockError:
                pass  # lost just now (self.lost is set): our own row all the same
        try:
            with self.engine.begin() as conn:
                return write(conn)
        except sa.exc.DBAPIError as exc:
            raise self.failure(exc, classify(exc)) from exc

    def probe(self, write: Callable[[sa.Connection], object]) -> str | None:
        """Whether the database takes what `write` writes: None, or the reason it refuses
        a value. Nothing is kept: the transaction is rolled back either way."""
        def attempt(conn: sa.Connection) -> None:
            write(conn)
            raise _RolledBack()

        try:
            self.transaction(attempt, refusable=True)
        except _RolledBack:
            return None
        except RowRefused as refused:
            return refused.reason
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Every CHECK_SECONDS while nothing is written: the lock session still answers,
        else it is had again (or the loss raised) before anything else happens."""
        if self.locks.session_bound and time.monotonic() - self.checked >= CHECK_SECONDS:
            self.transaction(lambda conn: conn.execute(sa.text("SELECT 1")))

    def _once(self, write: Callable[[sa.Connection], T]) -> T:
        try:
            conn = self.locks.session()
        except sa.exc.DBAPIError as exc:
            raise _Unreachable() from exc  # connecting again failed: the server is away
        if conn is None:
            with self.engine.begin() as conn:
                return write(conn)
        with conn.begin():
            return write(conn)

    def _wrapped(self, raw: Exception) -> sa.exc.DBAPIError:
        """A driver's own exception, as SQLAlchemy would have raised it."""
        dbapi = self.engine.dialect.loaded_dbapi
        # psycopg's is_disconnect wants the connection to tell; an OperationalError out
        # of COPY is the connection's trouble, not the statement's
        gone = (self.engine.dialect.is_disconnect(raw, None, None)
                or isinstance(raw, dbapi.OperationalError))
        return sa.exc.DBAPIError(None, None, raw, connection_invalidated=gone)

    def _where(self) -> str:
        return engine_url(self.engine)

    def failure(self, exc: BaseException | None, kind: str) -> DatabaseFailed:
        """The run's end, in one line: the database and the cause."""
        cause = describe(exc)
        if kind == "full":
            cause = f"the disk or a quota is full ({cause})"
        elif kind == "gone":
            cause = f"connection lost, and not had again in {RECONNECT_SECONDS:.0f} s ({cause})"
        return DatabaseFailed(f"the database {self._where()} failed during the run: {cause}")


class _RolledBack(Exception):
    """Ends a probe's transaction: it rolls back."""


class _Unreachable(Exception):
    """Opening the run's session again failed (its cause is chained)."""


def classify(exc: sa.exc.DBAPIError) -> str:
    """'contended', 'gone', 'full', 'refused' or 'other'."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or ""
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    text = str(orig)
    if sqlstate in _CONTENDED_SQLSTATES or errno in _CONTENDED_ERRNOS:
        return "contended"
    if "database is locked" in text or "UNIQUE constraint failed" in text:  # SQLite
        return "contended"
    if sqlstate in _FULL_SQLSTATES or errno in _FULL_ERRNOS or "disk is full" in text:
        return "full"
    if (exc.connection_invalidated or sqlstate.startswith(_GONE_SQLSTATE_PREFIXES)
            or errno in _GONE_ERRNOS):
        return "gone"
    if (sqlstate.startswith(_REFUSED_SQLSTATE_PREFIXES) or errno in _REFUSED_ERRNOS
            or isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError))):
        return "refused"
    return "other"


def describe(exc: BaseException | None) -> str:
    """The server's reason in one line: never the statement or its bound values (which
    SQLAlchemy's own message holds)."""
    if exc is None:
        return "no answer"
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):  # MySQL: (errno, message)
        text = f"MySQL error {args[0]}: {args[1]}"
    else:
        text = str(orig).strip()
    first = text.splitlines()[0].strip() if text else orig.__class__.__name__
    return first if len(first) <= 200 else first[:197] + "..."
