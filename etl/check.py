"""`asana-etl check`: a preflight of everything a run needs: the config, the token, the
plan, every scope, and the database.

One `limit=1` request per scope, one connection to the database, each failure reported
with its fix. Nothing is written, and no SQLite file is created.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from etl import db
from etl.asana import AsanaClient
from etl.config import Scope, Settings
from etl.errors import AsanaError, AuthError, DatabaseError
from etl.extract import ENTRIES_PATH, scope_params

FIXES = {
    401: "Asana refused the token: create a new personal access token (My settings → Apps → "
         "Developer apps) and set ASANA_ACCESS_TOKEN or [asana] token_file",
    402: "the workspace's plan has no time tracking: it needs Asana Advanced or Enterprise",
    403: "the token's user cannot see this object: share it with that user, or remove the "
         "scope from [scopes]",
    404: "no such object: check the gid (the number in the object's Asana URL) and its kind "
         "(users / projects / portfolios / tasks / workspace)",
    400: "Asana refused the request: check the gid and its kind in [scopes]",
}


@dataclass(frozen=True)
class ScopeCheck:
    scope: Scope
    ok: bool
    status: int | None = None
    message: str | None = None

    @property
    def fix(self) -> str | None:
        if self.ok:
            return None
        if self.status == 404 and "base_url" in (self.message or ""):
            return ("set [asana] base_url to the API's root, which ends in /api/1.0 "
                    "(Asana's: https://app.asana.com/api/1.0)")
        return FIXES.get(self.status or 0, "Asana could not be reached: check the network, "
                         "[asana] base_url and status.asana.com, then try again")


def check_scopes(settings: Settings) -> list[ScopeCheck]:
    """Ask Asana for one entry of every configured scope."""
    token = settings.require_token()
    results = []
    # a preflight should answer quickly: two retries, short waits
    quick = dataclasses.replace(settings.asana, max_retries=2, max_rate_limit_waits=2,
                                backoff_max_seconds=2.0)
    with AsanaClient(quick, token) as client:
        for scope in settings.scopes:
            try:
                client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1, "opt_fields": "gid"})
                results.append(ScopeCheck(scope, True))
            except AuthError as exc:
                # the same answer for every scope: no point asking again
                results.extend(ScopeCheck(s, False, exc.status, exc.message)
                               for s in settings.scopes[len(results):])
                break
            except AsanaError as exc:
                results.append(ScopeCheck(scope, False, exc.status, exc.message))
    return results


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
    shown = db.mask_url(url)
    try:
        engine = db.make_engine(url)
    except DatabaseError as exc:
        return DatabaseCheck(shown, False, str(exc), "correct [database] url or "
                             "ASANA_ETL_DATABASE_URL")
    try:
        if engine.dialect.name == "sqlite" and not _sqlite_file_exists(engine):
            return _new_sqlite_file(shown, engine)
        try:
            db.check_connection(engine)
            revision = db.current_revision(engine)
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
    problem = db.sqlite_folder_problem(engine.url.database)
    if problem is None:
        return DatabaseCheck(shown, True, "no file yet: the first sync creates it")
    folder = Path(engine.url.database).resolve().parent
    fix = (f"create it (mkdir -p {folder}) or point [database] url elsewhere"
           if "does not exist" in problem else
           "give this user write permission on it, or point [database] url at a folder it can "
           "write")
    return DatabaseCheck(shown, False, problem, fix)


def _schema_state(shown: str, revision: str | None) -> DatabaseCheck:
    head = db.HEAD_REVISION
    if revision is None:
        return DatabaseCheck(shown, True, "no schema yet: the first sync (or `asana-etl db "
                             "upgrade`) makes it")
    if revision == head:
        return DatabaseCheck(shown, True, f"schema at head ({head})")
    if revision in db.known_revisions():
        return DatabaseCheck(shown, True, f"schema at {revision}, behind this version's "
                             f"{head}: the next sync migrates it (or `asana-etl db upgrade`)")
    return DatabaseCheck(shown, False, f"schema at {revision}, which this version does not "
                         f"know (its newest is {head})", "install the asana-etl version that "
                         "made it (or a newer one): an older one must not write to it")
