"""`asana-etl db upgrade`: apply the migrations, one process at a time."""

from __future__ import annotations

import click

from etl.cli import summary
from etl.cli.app import cli, json_output, settings_of
from etl.store import engines, migrate
from etl.store.lock import schema_lock


@cli.group("db", short_help="The database schema: db upgrade applies the migrations.")
def db_group() -> None:
    """Manage the database schema (alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply the migrations to the configured database (one process at a time; safe to
    run again, and after an interrupted one).

    Exit status: 0 the schema is at the revision asked for, 2 configuration or database
    error.
    """
    settings = settings_of(ctx, require_file=False)
    engine = engines.make_engine(settings.database_url)
    engines.check_connection(engine)
    with schema_lock(engine):  # one process migrates at a time
        migrate.upgrade(engine, revision)
    where, now = engines.mask_url(settings.database_url), migrate.current_revision(engine)
    engine.dispose()
    if json_output(ctx):
        click.echo(summary.dumps({"event": "db_upgraded", "database": where, "revision": now}))
    else:
        click.echo(f"{where} is at revision {now}")
