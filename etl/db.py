"""The schema (declared once), engines, and the alembic migrations that create it.

`metadata` is what the migrations must agree with: a test runs alembic autogenerate
against it and fails on any difference.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine, make_url

from etl import database_url
from etl.errors import DatabaseError
from etl.transform import CanonicalJSON

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

#: The newest migration (a test checks it is the migrations' one head). A run whose
#: database is already there needs no alembic at all: importing it was a third of a
#: second of every command.
HEAD_REVISION = "0008"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A UTC timestamp on every backend.

    PostgreSQL stores `timestamptz`; SQLite and MySQL have no time zones, so the value is
    stored as naive UTC (microseconds kept on MySQL) and read back as aware UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite through raw SQL
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def gid_type() -> sa.String:
    """Gids are strings of digits: text everywhere, never a number (they overflow floats)."""
    return sa.String(64)


#: JSON where the backend has it (JSONB on PostgreSQL so equality works), text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: Text of any length, for what Asana sends (names) and what quotes it (reasons,
#: payloads, errors): MySQL's TEXT holds 65,535 bytes, so LONGTEXT there (migration 0008).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")

# utf8mb4 for full Unicode; a binary collation so that a rename that only changes case
# or accents is still seen as a change (the upsert compares names with `<=>`).
MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

time_tracking_entries = sa.Table(
    "time_tracking_entries",
    metadata,
    sa.Column("gid", gid_type(), primary_key=True),
    sa.Column("duration_minutes", sa.Integer, nullable=False),
    sa.Column("entered_on", sa.Date, nullable=False),
    sa.Column("attributable_to_gid", gid_type(), nullable=True),
    sa.Column("attributable_to_name", LongText, nullable=True),
    sa.Column("created_by_gid", gid_type(), nullable=True),
    sa.Column("created_by_name", LongText, nullable=True),
    sa.Column("raw", JSONType, nullable=False),
    # digest of the canonical `raw`: an unchanged entry is recognised without reading
    # back and parsing its JSON (null: unknown, compare as changed)
    sa.Column("content_hash", sa.String(32), nullable=True),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Index(None, "entered_on"),
    sa.Index(None, "created_by_gid"),
    sa.Index(None, "attributable_to_gid"),
    **MYSQL_TABLE_ARGS,
)

#: Which scope's listing saw which entry: deletion detection needs to know what a
#: complete listing of a scope should contain.
time_tracking_entry_scopes = sa.Table(
    "time_tracking_entry_scopes",
    metadata,
    sa.Column("scope_type", sa.String(16), primary_key=True),
    sa.Column("scope_gid", gid_type(), primary_key=True),
    # no foreign key: the loader writes an entry and its links together; the key's
    # per-row check was a fifth of PostgreSQL's work in a first sync (migration 0006)
    sa.Column("entry_gid", gid_type(), primary_key=True),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Index(None, "entry_gid"),
    **MYSQL_TABLE_ARGS,
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("command", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scopes_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("scopes_failed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("entries_seen", sa.Integer, nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", LongText, nullable=True),
    sa.Column("hostname", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Index(None, "started_at"),
    **MYSQL_TABLE_ARGS,
)

sync_run_scopes = sa.Table(
    "sync_run_scopes",
    metadata,
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("sync_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("scope_type", sa.String(16), primary_key=True),
    sa.Column("scope_gid", gid_type(), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("entries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_after_seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("error", LongText, nullable=True),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
    # the days the run read of the scope (both null: all of them, a full read)
    sa.Column("window_since", sa.Date, nullable=True),
    sa.Column("window_until", sa.Date, nullable=True),
    # the date windows it was read in, and the requests that took
    sa.Column("listings", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "scope_type", "scope_gid", "status"),
    **MYSQL_TABLE_ARGS,
)

#: What the current pass of each scope has seen, so that deletion detection can ask the
#: database (not a set in memory) which linked entries the pass did not see. Rows live
#: only while their scope is being listed; bookkeeping, like the other sync_run* tables.
#: Append-only, no primary key (a gid seen twice is harmless: candidates are a set
#: difference), so a batch goes in with the backend's fastest bulk insert; UNLOGGED on
#: PostgreSQL (no WAL: after a server crash the run is abandoned anyway; set by
#: migration 0005, as table options are not compared by autogenerate).
sync_run_seen_entries = sa.Table(
    "sync_run_seen_entries",
    metadata,
    # no foreign key: its per-row check was most of a seen-mark's cost (migration 0006)
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("scope_type", sa.String(16), nullable=False),
    sa.Column("scope_gid", gid_type(), nullable=False),
    sa.Column("entry_gid", gid_type(), nullable=False),
    sa.Index(None, "run_id", "scope_type", "scope_gid"),
    **MYSQL_TABLE_ARGS,
)

rejected_records = sa.Table(
    "rejected_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("sync_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("scope_type", sa.String(16), nullable=False),
    sa.Column("scope_gid", gid_type(), nullable=False),
    sa.Column("entry_gid", gid_type(), nullable=True),
    sa.Column("reason", LongText, nullable=False),
    sa.Column("payload", LongText, nullable=False),
    sa.Column("rejected_at", UTCDateTime, nullable=False),
    sa.Index(None, "run_id"),
    **MYSQL_TABLE_ARGS,
)


# --- engines ---------------------------------------------------------------------------

#: Driver module → the extra that installs it.
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
    # WAL lets a BI tool read while a sync writes
    cursor.execute("PRAGMA journal_mode=WAL")
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


# --- migrations ------------------------------------------------------------------------


def migrations_dir() -> Path:
    """The alembic script directory: inside the installed package, else the source tree."""
    packaged = Path(__file__).resolve().parent / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    source = Path(__file__).resolve().parent.parent / "migrations"
    if (source / "env.py").is_file():
        return source
    raise DatabaseError("the migrations are missing from this installation")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An alembic Config built in code, independent of the current directory."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def migration_connection(engine: Engine) -> Iterator[sa.Connection]:
    """A connection in one transaction, which alembic runs all of an upgrade in: where
    DDL is transactional, a process killed midway leaves the database at the revision
    it started from, whole.

    PostgreSQL does that as is. SQLite's DDL is transactional too, but its driver
    (pysqlite) opens a transaction only before an INSERT/UPDATE/DELETE: each CREATE or
    ALTER before one committed on its own, and a kill left tables with no revision
    recorded. So for this connection only the driver leaves transactions alone
    (isolation_level None; restored after) and BEGIN IMMEDIATE opens one, taking the
    write lock at the start: a deferred BEGIN would fail, not wait, at its first write
    if another connection had committed since its first read. MySQL commits each DDL
    statement regardless: there each migration step checks before it acts
    (etl.migration_steps), so that running a half-applied migration again completes it.
    """
    with engine.connect() as connection:
        if engine.dialect.name != "sqlite":
            with connection.begin():
                yield connection
            return
        driver = connection.connection.driver_connection
        legacy = driver.isolation_level
        driver.isolation_level = None
        try:
            with connection.begin():
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
        finally:
            driver.isolation_level = legacy  # the pool's next user gets the driver's default


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent; without alembic when there is
    nothing to do)."""
    if revision in ("head", HEAD_REVISION) and current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), revision)


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def known_revisions() -> set[str]:
    """Every revision of this version's migrations."""
    return {revision.revision for revision in _script().walk_revisions()}


def head_revision() -> str:
    """The migrations' one head, as alembic reads them."""
    heads = _script().get_heads()
    if len(heads) != 1:
        raise DatabaseError(f"the migrations have {len(heads)} heads; expected one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated), as alembic records it."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
        found = list(versions)
    if len(found) > 1:
        raise DatabaseError(f"the database records {len(found)} migration heads; expected one")
    return found[0] if found else None


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == HEAD_REVISION
