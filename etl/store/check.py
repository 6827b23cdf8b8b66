"""`asana-etl check`, the database's side: can a run use the configured database? The
URL, the server (one connection) or the SQLite file's folder, and where its schema
stands. Nothing is written, and no SQLite file is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from etl.config import Settings
from etl.errors import DatabaseError
from etl.store import engines, migrate


@dataclass(frozen=True)
class DatabaseCheck:
    """What `check` found of the database: `ok`, what it is like (`state`), and for a
    failure the fix."""

    database: str
    ok: bool
    state: str
    fix: str | None = None


def check_database(settings: Settings) -> DatabaseCheck:
    """Whether a run can use the configured database: the URL, the server (one
    connection) or the SQLite file's folder, and where its schema stands against this
    version's migrations (none yet, behind: a sync migrates it; ahead: this version is
    too old for it)."""
    url = settings.database_url
    shown = engines.mask_url(url)
    try:
        engine = engines.make_engine(url)
    except DatabaseError as exc:
        return DatabaseCheck(shown, False, str(exc), "correct [database] url or "
                             "ASANA_ETL_DATABASE_URL")
    try:
        if engine.dialect.name == "sqlite" and not _sqlite_file_exists(engine):
            return _new_sqlite_file(shown, engine)
        try:
            engines.check_connection(engine)
            revision = migrate.current_revision(engine)
        except (DatabaseError, sa.exc.SQLAlchemyError) as exc:
            reason = str(exc).splitlines()[0] if isinstance(exc, DatabaseError) else \
                f"cannot read it: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
            return DatabaseCheck(shown, False, reason, "is the server up and the URL's host, "
                                 "port, user and database right? (the password is not shown)")
        return _schema_state(shown, revision)
    finally:
        engine.dispose()


def _sqlite_file_exists(engine: sa.Engine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or Path(database).exists()


def _new_sqlite_file(shown: str, engine: sa.Engine) -> DatabaseCheck:
    problem = engines.sqlite_folder_problem(engine.url.database)
    if problem is None:
        return DatabaseCheck(shown, True, "no file yet: the first sync creates it")
    folder = Path(engine.url.database).resolve().parent
    fix = (f"create it (mkdir -p {folder}) or point [database] url elsewhere"
           if "does not exist" in problem else
           "give this user write permission on it, or point [database] url at a folder it can "
           "write")
    return DatabaseCheck(shown, False, problem, fix)


def _schema_state(shown: str, revision: str | None) -> DatabaseCheck:
    head = migrate.HEAD_REVISION
    if revision is None:
        return DatabaseCheck(shown, True, "no schema yet: the first sync (or `asana-etl db "
                             "upgrade`) makes it")
    if revision == head:
        return DatabaseCheck(shown, True, f"schema at head ({head})")
    if revision in migrate.known_revisions():
        return DatabaseCheck(shown, True, f"schema at {revision}, behind this version's "
                             f"{head}: the next sync migrates it (or `asana-etl db upgrade`)")
    return DatabaseCheck(shown, False, f"schema at {revision}, which this version does not "
                         f"know (its newest is {head})", "install the asana-etl version that "
                         "made it (or a newer one): an older one must not write to it")


def details_backlog(settings: Settings) -> int | None:
    """Entries whose details are still to read, as the database holds them (None: no
    database yet, or one that does not answer: unknown until the first sync)."""
    from etl.store.details import backlog_size

    try:
        engine = engines.make_engine(settings.database_url)
    except DatabaseError:
        return None
    try:
        if engine.dialect.name == "sqlite" and not _sqlite_file_exists(engine):
            return None
        if migrate.current_revision(engine) is None:
            return None
        with engine.connect() as conn:
            return backlog_size(conn)
    except (DatabaseError, sa.exc.SQLAlchemyError):
        return None
    finally:
        engine.dispose()
