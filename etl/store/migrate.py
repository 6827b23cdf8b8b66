"""The alembic migrations that create the schema: where they are, the connection an
upgrade runs in, and where a database stands against them.

A run whose database is already at `HEAD_REVISION` needs no alembic at all: importing it
was a third of a second of every command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest migration (a test checks it is the migrations' one head).
HEAD_REVISION = "0010"


def migrations_dir() -> Path:
    """The alembic script directory: inside the installed package, else the source tree."""
    package = Path(__file__).resolve().parent.parent  # etl/
    packaged = package / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    source = package.parent / "migrations"
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
    nothing to do, nor when a new SQLite file is brought to head: see `create_at_head`)."""
    if revision in ("head", HEAD_REVISION):
        current = current_revision(engine)
        if current == HEAD_REVISION or (current is None and create_at_head(engine)):
            return
    from alembic import command

    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), revision)


def create_at_head(engine: Engine) -> bool:
    """On SQLite, make the schema at head in an empty database at one go, as the
    migrations would leave it (`etl.store.sqlite_head`), in one transaction; whether it
    did (False: not SQLite, not empty, or a snapshot of another revision: for alembic)."""
    from etl.store import sqlite_head

    if engine.dialect.name != "sqlite" or sqlite_head.REVISION != HEAD_REVISION:
        return False
    with migration_connection(engine) as connection:  # the write lock: no one else makes it
        if connection.exec_driver_sql("SELECT count(*) FROM sqlite_master "
                                      "WHERE name NOT LIKE 'sqlite_%'").scalar():
            return False
        for statement in sqlite_head.STATEMENTS:
            connection.exec_driver_sql(statement)
    return True


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
