"""The `asana-etl` command line: thin commands over `etl.pipeline`, `etl.db`, `etl.runs`.

This is the only module that configures logging and turns errors into exit codes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from etl import __version__, db, runs
from etl.config import ENV_CONFIG, DateWindow, Scope, Settings, load_settings
from etl.demo import DEMO_DATABASE_URL, run_demo
from etl.errors import EtlError, ExitCode, Interrupted
from etl.pipeline import (
    RunResult,
    prepare_database,
    request_stop,
    run_backfill,
    run_sync,
)

log = logging.getLogger("etl")


class _EtlGroup(click.Group):
    """Maps the tool's errors to the CONTRACT's exit codes with a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            for line in str(exc).splitlines():
                click.echo(f"error: {line}", err=True)
            ctx.exit(int(exc.exit_code))
        except Interrupted as exc:
            click.echo(f"error: {exc}; the page in hand was rolled back and the run recorded "
                       "as failed", err=True)
            ctx.exit(exc.exit_code)


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event, message, and the record's
    structured `fields` (passed as `extra={"event": ..., "fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        return json.dumps(line, ensure_ascii=False, default=str)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("etl")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _gid(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not value.isascii() or not value.isdigit():
            raise click.BadParameter(f"{value!r} is not a gid (a string of digits)")
    return values


@click.group(cls=_EtlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help=f"TOML config file [default: ${ENV_CONFIG}, else ./config.toml].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    envvar="ASANA_ETL_LOG_LEVEL",
    help="Log verbosity on stderr (env ASANA_ETL_LOG_LEVEL).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object a line.",
)
@click.version_option(__version__, prog_name="asana-etl")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Keep a SQL database in sync with Asana's time tracking entries."""
    _setup_logging(log_level, log_format)
    ctx.obj = {"config_path": config_path}


def _settings(ctx: click.Context, *, require_file: bool = True) -> Settings:
    return load_settings(ctx.obj["config_path"], require_file=require_file)


@cli.group("db")
def db_group() -> None:
    """Manage the database schema (alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply the migrations to the configured database."""
    settings = _settings(ctx, require_file=False)
    engine = db.make_engine(settings.database_url)
    db.check_connection(engine)
    db.upgrade(engine, revision)
    click.echo(f"{db.mask_url(settings.database_url)} is at revision {db.current_revision(engine)}")
    engine.dispose()


def _finish(ctx: click.Context, result: RunResult) -> None:
    for scope in result.failed_scopes:
        click.echo(f"error: scope {scope.scope} failed: {scope.error}", err=True)
    click.echo(result.summary())
    ctx.exit(int(result.exit_code))


@cli.command()
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations first.")
@click.pass_context
def sync(ctx: click.Context, no_migrate: bool) -> None:
    """The nightly run: read every configured scope in full and load it."""
    result = run_sync(_settings(ctx), migrate=not no_migrate)
    _finish(ctx, result)


@cli.command()
@click.option("--user", "users", multiple=True, callback=_gid, help="A user gid (repeatable).")
@click.option("--project", "projects", multiple=True, callback=_gid, help="A project gid (repeatable).")
@click.option("--portfolio", "portfolios", multiple=True, callback=_gid, help="A portfolio gid (repeatable).")
@click.option("--task", "tasks", multiple=True, callback=_gid, help="A task gid (repeatable).")
@click.option("--workspace", "workspaces", multiple=True, callback=_gid, help="A workspace gid.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Keep entries entered on or after this date.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Keep entries entered on or before this date.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations first.")
@click.pass_context
def backfill(ctx: click.Context, users, projects, portfolios, tasks, workspaces, since, until,
             no_migrate: bool) -> None:
    """A one-off load of the scopes named here (else every configured scope)."""
    named = (
        [Scope("workspace", g) for g in workspaces]
        + [Scope("user", g) for g in users]
        + [Scope("project", g) for g in projects]
        + [Scope("portfolio", g) for g in portfolios]
        + [Scope("task", g) for g in tasks]
    )
    window = DateWindow(since.date() if since else None, until.date() if until else None)
    result = run_backfill(
        _settings(ctx), scopes=list(dict.fromkeys(named)) or None, window=window,
        migrate=not no_migrate,
    )
    _finish(ctx, result)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--check", is_flag=True, help="Exit 1 when a configured scope has no success within --stale-hours.")
@click.option("--stale-hours", default=36.0, show_default=True, help="Age after which a scope is stale.")
@click.option("--limit", default=10, show_default=True, help="How many recent runs to show.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, check: bool, stale_hours: float, limit: int) -> None:
    """Recent runs and each scope's last success."""
    settings = _settings(ctx, require_file=False)
    engine = prepare_database(settings.database_url, migrate=False)
    with engine.connect() as conn:
        recent = runs.recent_runs(conn, limit)
        scopes = {(s["scope_type"], s["scope_gid"]): s for s in runs.scope_freshness(conn)}
    engine.dispose()
    now = runs.utcnow()
    for scope in settings.scopes:  # configured but never listed: stale too
        scopes.setdefault((scope.kind, scope.gid), {
            "scope_type": scope.kind, "scope_gid": scope.gid, "last_status": None,
            "last_error": None, "last_run_id": None, "last_success": None,
        })
    stale_after = dt.timedelta(hours=stale_hours)
    for s in scopes.values():
        s["stale"] = s["last_success"] is None or now - s["last_success"] > stale_after
    configured = {(s.kind, s.gid) for s in settings.scopes} or set(scopes)
    stale = [s for key, s in scopes.items() if key in configured and s["stale"]]
    if as_json:
        click.echo(json.dumps({"runs": recent, "scopes": list(scopes.values())}, default=str, indent=2))
    else:
        _print_status(recent, list(scopes.values()), now)
    if check and stale:
        click.echo(f"{len(stale)} scope(s) stale (no success in {stale_hours:g} h)", err=True)
        ctx.exit(int(ExitCode.SCOPE_FAILED))


def _print_status(recent: list[dict[str, Any]], scopes: list[dict[str, Any]], now: dt.datetime) -> None:
    click.echo("Recent runs:")
    if not recent:
        click.echo("  (none)")
    for r in recent:
        took = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        click.echo(
            f"  #{r['id']} {r['command']:<8} {r['status']:<9} {r['started_at']:%Y-%m-%d %H:%M:%S}Z "
            f"{'' if took is None else f'{took:.1f}s':>8}  seen {r['entries_seen']}, "
            f"+{r['inserted']} ~{r['updated']} ={r['unchanged']} -{r['deleted']} !{r['rejected']}"
        )
    click.echo("Scopes:")
    if not scopes:
        click.echo("  (none)")
    for s in scopes:
        last = s["last_success"]
        age = f"{(now - last).total_seconds() / 3600:.1f} h ago" if last else "never"
        flag = "STALE " if s["stale"] else "      "
        error = f"  last error: {s['last_error']}" if s["last_status"] == runs.FAILED else ""
        click.echo(f"  {flag}{s['scope_type']}:{s['scope_gid']}  last success {age}{error}")


@cli.command()
@click.option("--database-url", default=DEMO_DATABASE_URL, show_default=True,
              help="Where to load the demo data.")
@click.option("--entries", default=2000, show_default=True, help="How many entries to simulate.")
@click.pass_context
def demo(ctx: click.Context, database_url: str, entries: int) -> None:
    """Sync a simulated Asana into a local SQLite file: try the tool without a token."""
    result = run_demo(database_url, entries=entries)
    if database_url.startswith("sqlite:///"):
        click.echo(f"database: {Path(database_url.removeprefix('sqlite:///')).resolve()}")
    _finish(ctx, result)


def _interrupt(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    # a loading run stops at its next safe point; anything else stops here and now
    if not request_stop(name, signum):
        raise Interrupted(name, signum)


def main() -> None:
    # SIGTERM (systemd, Kubernetes, kill) and SIGINT (Ctrl-C) stop the run gracefully:
    # the exception unwinds through the open transaction, which rolls back
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    cli(prog_name="asana-etl")
