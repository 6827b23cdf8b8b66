"""The `asana-etl` command line: thin commands over `etl.pipeline`, `etl.db`, `etl.runs`.

This is the only module that configures logging and turns errors into exit codes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from etl import __version__, db, pipes, runs, summary
from etl.config import ENV_CONFIG, MAX_DAYS, DateWindow, Scope, Settings, load_settings
from etl.demo import DEMO_DATABASE_URL, run_demo, top_projects
from etl.check import check_database, check_scopes
from etl.errors import ConfigError, DatabaseError, EtlError, ExitCode, Interrupted
from etl.lock import schema_lock
from etl.logcontext import ContextFilter
from etl.metrics import write_metrics
from etl.wording import count
from etl.pipeline import (
    RunResult,
    prepare_database,
    request_stop,
    run_backfill,
    run_sync,
)

if TYPE_CHECKING:
    from etl.console import Terminal

log = logging.getLogger("etl")


class _EtlGroup(click.Group):
    """Maps the tool's errors to the CONTRACT's exit codes with a one-line message (one
    JSON object with `--log-format json`), and gives a run that ends so its summary."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            _fail(ctx, exc, int(exc.exit_code), str(exc).splitlines())
        except Interrupted as exc:
            _fail(ctx, exc, exc.exit_code, [f"{exc}: stopped between two batches, nothing "
                                           "half-written; a run in progress is recorded as failed"])


def _fail(ctx: click.Context, exc: BaseException, code: int, lines: list[str]) -> None:
    obj = ctx.obj or {}
    if isinstance(exc, DatabaseError):  # its cause, for a bug report: at debug only
        log.debug("what the database driver said", exc_info=exc)
    if obj.get("log_format") == "json":
        log.error("%s", "; ".join(lines), extra={"event": "error", "fields": {"exit_code": code}})
    else:
        for line in lines:
            click.echo(f"error: {line}", err=True)
    command = obj.get("run_command")
    if command is not None:  # a run's command: its summary is due all the same
        document = summary.of_error(command, exc, code)
        if obj.get("summary_file"):
            summary.write_file(obj["summary_file"], document)
        pipes.report(document)  # to the Dagster asset that launched it, if one did
        if obj.get("log_format") == "json":
            click.echo(summary.dumps(document))
        elif getattr(exc, "result", None) is not None:  # it had started: what it did
            click.echo(exc.result.summary())
    ctx.exit(code)


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event, message, and the record's
    structured `fields` (passed as `extra={"event": ..., "fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "scope": getattr(record, "scope", None),
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        return json.dumps(line, ensure_ascii=False, default=_iso_default)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            part for part in (
                f"run={record.run_id}" if getattr(record, "run_id", None) else "",
                f"scope={record.scope}" if getattr(record, "scope", None) else "",
            ) if part
        )
        text = super().format(record)
        return f"{text} [{context}]" if context else text


def _setup_logging(level: str, fmt: str) -> Terminal | None:
    """Log lines to stderr; on a terminal (text logs only), through the `Terminal` that
    the live progress shares (returned), so that they scroll above it whole."""
    terminal = None
    if fmt == "text" and sys.stderr.isatty():
        from etl.console import Terminal, TerminalHandler

        terminal = Terminal(sys.stderr)
    handler = logging.StreamHandler(sys.stderr) if terminal is None else TerminalHandler(terminal)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("etl")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return terminal


class _Day(click.ParamType):
    """A calendar day as YYYY-MM-DD; an impossible one (2026-02-30) is said to be so,
    not to be in the wrong format."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> dt.date:
        if isinstance(value, dt.date):
            return value
        text = str(value).strip()
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            self.fail(f"{text!r} is not a date as YYYY-MM-DD (e.g. 2026-03-31)", param, ctx)
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            self.fail(f"no such date: {text}", param, ctx)


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
    default="info",
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
    terminal = _setup_logging(log_level, log_format)
    ctx.obj = {"config_path": config_path, "log_format": log_format, "terminal": terminal}


def _settings(ctx: click.Context, *, require_file: bool = True) -> Settings:
    return load_settings(ctx.obj["config_path"], require_file=require_file)


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
    settings = _settings(ctx, require_file=False)
    engine = db.make_engine(settings.database_url)
    db.check_connection(engine)
    with schema_lock(engine):  # one process migrates at a time
        db.upgrade(engine, revision)
    where, now = db.mask_url(settings.database_url), db.current_revision(engine)
    engine.dispose()
    if _json(ctx):
        click.echo(summary.dumps({"event": "db_upgraded", "database": where, "revision": now}))
    else:
        click.echo(f"{where} is at revision {now}")


def _json(ctx: click.Context) -> bool:
    return ctx.obj.get("log_format") == "json"


def _run_command(ctx: click.Context, command: str, summary_file: str | None) -> None:
    """This command is a run: whatever ends it, its summary goes to stdout (with
    `--log-format json`) and to `summary_file`."""
    ctx.obj.update(run_command=command, summary_file=summary_file)


def _finish(ctx: click.Context, result: RunResult, metrics_file: str | None = None) -> None:
    if not _json(ctx):  # as JSON, the scope_failed log lines say it
        for scope in result.failed_scopes:
            click.echo(f"error: scope {scope.scope} failed: {scope.error}", err=True)
    if metrics_file:
        write_metrics(metrics_file, result)
    document = result.document()
    if ctx.obj.get("summary_file"):
        summary.write_file(ctx.obj["summary_file"], document)
    pipes.report(document)  # to the Dagster asset that launched it, if one did
    # the last line of every run, on stdout and in the log (in either format)
    log.info(result.summary(), extra={"event": "summary", "run_id": result.run_id,
                                         "fields": document})
    click.echo(summary.dumps(document) if _json(ctx) else result.summary())
    ctx.exit(int(result.exit_code))


def _progress(ctx: click.Context, title: str) -> contextlib.AbstractContextManager[Any]:
    """Live progress on stderr when it is a terminal (and logs are text); nothing for
    cron mail, log files or log shippers."""
    terminal = ctx.obj.get("terminal")
    if terminal is None:
        return contextlib.nullcontext()
    from etl.progress import TerminalProgress

    return TerminalProgress(terminal, title)


metrics_option = click.option(
    "--metrics-file", type=click.Path(dir_okay=False),
    help="Write Prometheus textfile-collector metrics here at the end of the run "
         "(atomically: a temporary file, then a rename).",
)
summary_option = click.option(
    "--summary-file", type=click.Path(dir_okay=False),
    help="Write the run summary here as one JSON document (the last stdout line with "
         "--log-format json), atomically, however the run ends.",
)


@cli.command(short_help="The nightly run: read every scope, load it, detect deletions.")
@click.option("--recent", "recent_days", type=click.IntRange(0, MAX_DAYS), metavar="DAYS",
              help="Read only the entries entered in the last DAYS days (today included, "
                   "UTC; later dates too), except for scopes due a full read "
                   "([sync] full_every_days); 0 reads everything [default: [sync] recent_days].")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations first.")
@click.option("--dry-run", is_flag=True,
              help="Read Asana and report what would be inserted, updated and deleted; "
                   "write nothing and take no lock.")
@metrics_option
@summary_option
@click.pass_context
def sync(ctx: click.Context, recent_days: int | None, no_migrate: bool, dry_run: bool,
         metrics_file: str | None, summary_file: str | None) -> None:
    """The nightly run: read every configured scope (in full, or its last days with
    --recent), load it, detect deletions.

    Exit status: 0 every scope loaded, 1 some scope failed (the others are loaded),
    2 configuration or database error, 3 Asana refused the token or plan, 4 another
    run holds one of its scopes, 5 the database failed during the run.
    """
    if dry_run:
        from etl.dryrun import run_dry_run

        dry = run_dry_run(_settings(ctx), recent_days=recent_days)
        if _json(ctx):
            click.echo(summary.dumps(dry.document()))
        else:
            for scope, error in dry.failed:
                click.echo(f"error: scope {scope} failed: {error}", err=True)
            click.echo(dry.summary())
        ctx.exit(int(ExitCode.SCOPE_FAILED if dry.failed else ExitCode.OK))
    _run_command(ctx, "sync", summary_file)
    settings = _settings(ctx)
    with _progress(ctx, "sync") as progress:
        result = run_sync(settings, recent_days=recent_days, migrate=not no_migrate,
                          progress=progress)
    _finish(ctx, result, metrics_file)


@cli.command(short_help="A one-off load of some scopes, or of a range of days.")
@click.option("--user", "users", multiple=True, callback=_gid, help="A user gid (repeatable).")
@click.option("--project", "projects", multiple=True, callback=_gid, help="A project gid (repeatable).")
@click.option("--portfolio", "portfolios", multiple=True, callback=_gid, help="A portfolio gid (repeatable).")
@click.option("--task", "tasks", multiple=True, callback=_gid, help="A task gid (repeatable).")
@click.option("--workspace", "workspaces", multiple=True, callback=_gid, help="A workspace gid.")
@click.option("--since", type=_Day(),
              help="Read only entries entered on or after this date (asked of Asana).")
@click.option("--until", type=_Day(),
              help="Read only entries entered on or before this date (asked of Asana).")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations first.")
@metrics_option
@summary_option
@click.pass_context
def backfill(ctx: click.Context, users, projects, portfolios, tasks, workspaces, since, until,
             no_migrate: bool, metrics_file: str | None, summary_file: str | None) -> None:
    """A one-off load of the scopes named here (else every configured scope), of the
    days between --since and --until (else all); deletions are looked for in those days
    only.

    Exit status: 0 every scope loaded, 1 some scope failed (the others are loaded),
    2 configuration or database error, 3 Asana refused the token or plan, 4 another
    run holds one of its scopes, 5 the database failed during the run.
    """
    named = (
        [Scope("workspace", g) for g in workspaces]
        + [Scope("user", g) for g in users]
        + [Scope("project", g) for g in projects]
        + [Scope("portfolio", g) for g in portfolios]
        + [Scope("task", g) for g in tasks]
    )
    _run_command(ctx, "backfill", summary_file)
    window = DateWindow(since, until)
    settings = _settings(ctx)
    with _progress(ctx, "backfill") as progress:
        result = run_backfill(settings, scopes=list(dict.fromkeys(named)) or None,
                              window=window, migrate=not no_migrate, progress=progress)
    _finish(ctx, result, metrics_file)


@cli.command(short_help="Recent runs, and each scope's freshness.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--check", is_flag=True,
              help="Exit 1 when a configured scope has no success within --stale-hours, or "
                   "no full read within twice [sync] full_every_days.")
@click.option("--stale-hours", default=36.0, show_default=True, help="Age after which a scope is stale.")
@click.option("--limit", default=10, show_default=True, help="How many recent runs to show.")
@click.pass_context
def status(ctx: click.Context, as_json: bool, check: bool, stale_hours: float, limit: int) -> None:
    """Recent runs, and each scope's last success and last full read.

    Exit status: 0 (with --check: every configured scope fresh), 1 with --check a scope
    is stale, 2 configuration or database error.
    """
    settings = _settings(ctx, require_file=False)
    engine = prepare_database(settings.database_url, migrate=False)
    now = runs.utcnow()
    full_days = 2 * settings.sync.full_every_days
    with engine.connect() as conn:
        recent = runs.recent_runs(conn, limit)
        scopes = runs.freshness(conn, settings.scopes, dt.timedelta(hours=stale_hours), now,
                                full_stale_after=dt.timedelta(days=full_days))
    engine.dispose()
    stale = [s for s in scopes if s["stale"] and s["configured"]]
    if _json(ctx):  # one object on one line, like every line of the JSON format
        click.echo(json.dumps({"runs": recent, "scopes": scopes}, default=_iso_default,
                              ensure_ascii=False))
    elif as_json:
        click.echo(json.dumps({"runs": recent, "scopes": scopes}, default=_iso_default, indent=2))
    else:
        _print_status(recent, scopes, now)
    if check and stale:
        message = (f"{len(stale)} scope(s) stale (no success in {stale_hours:g} h, or no full "
                   f"read in {full_days} days)")
        if _json(ctx):
            log.error("%s", message, extra={"event": "stale", "fields": {
                "exit_code": int(ExitCode.SCOPE_FAILED),
                "scopes": [f"{s['scope_type']}:{s['scope_gid']}" for s in stale]}})
        else:
            click.echo(message, err=True)
        ctx.exit(int(ExitCode.SCOPE_FAILED))


def _iso_default(value: Any) -> str:
    """JSON for what json cannot say itself: dates and timestamps as ISO 8601."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _print_status(recent: list[dict[str, Any]], scopes: list[dict[str, Any]], now: dt.datetime) -> None:
    click.echo("Recent runs:")
    if not recent:
        click.echo("  (none)")
    else:
        rows = [["run", "command", "status", "started (UTC)", "took", "seen", "new", "changed",
                 "unchanged", "deleted", "rejected"]]
        for r in recent:
            took = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
            rows.append([f"#{r['id']}", r["command"], r["status"],
                         f"{r['started_at']:%Y-%m-%dT%H:%M:%SZ}",
                         "" if took is None else f"{took:.1f} s", r["entries_seen"], r["inserted"],
                         r["updated"], r["unchanged"], r["deleted"], r["rejected"]])
        _table(rows, right_from=4)
    click.echo("Scopes:")
    if not scopes:
        click.echo("  (none)")
        return
    rows = [["", "scope", "last status", "last success", "last full read", "last run"]]
    errors = {}
    for s in scopes:
        last, full = s["last_success"], s["last_full_read"]
        last_run = ""
        if s["last_run_id"] is not None:
            since, until = s["last_window_since"], s["last_window_until"]
            days = "all days" if since is None and until is None else f"{since or ''}..{until or ''}"
            last_run = (f"#{s['last_run_id']}: {days}, {count(s['last_pages'], 'page')} in "
                        f"{count(s['last_listings'], 'listing')}")
        scope = f"{s['scope_type']}:{s['scope_gid']}"
        rows.append(["STALE" if s["stale"] else "", scope, s["last_status"] or "never run",
                     f"{(now - last).total_seconds() / 3600:.1f} h ago" if last else "never",
                     f"{(now - full).total_seconds() / 86400:.1f} d ago" if full else "never",
                     last_run])
        if s["last_status"] == runs.FAILED:
            errors[scope] = s["last_error"]
    if not any(row[0] for row in rows[1:]):
        rows = [row[1:] for row in rows]  # no stale scope: no column for the flag
    _table(rows)
    for scope, error in errors.items():
        click.echo(f"  {scope} last error: {error}")


def _table(rows: list[list[Any]], right_from: int | None = None) -> None:
    """Rows in aligned columns (the first row is the header); numbers right-aligned from
    column `right_from` on."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        line = "  ".join(value.rjust(width) if right_from is not None and i >= right_from
                         else value.ljust(width) for i, (value, width) in enumerate(zip(row, widths)))
        click.echo(f"  {line.rstrip()}")


@cli.command(short_help="Preflight: config, database, token, plan and every scope.")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Preflight: the config is valid, the database can be used (reachable, and where
    its schema stands), Asana accepts the token and the plan, and every configured scope
    exists and is visible. One small request per scope; writes nothing.

    Exit status: 0 everything passed, 1 a scope failed, 2 configuration or database,
    3 Asana refused the token or plan.
    """
    settings = _settings(ctx)
    database = db.mask_url(settings.database_url)
    if not _json(ctx):
        click.echo(f"config {settings.source}: valid, {count(len(settings.scopes), 'scope')}, "
                   f"database {database}")
    if not settings.scopes:
        raise ConfigError(f"no scopes to check: add some under [scopes] in {settings.source}")
    checked = check_database(settings)
    if _json(ctx):
        click.echo(summary.dumps({"event": "database_checked", "database": checked.database,
                                  "ok": checked.ok, "state": checked.state, "fix": checked.fix}))
    elif checked.ok:
        click.echo(f"ok    database: {checked.state}")
    else:
        click.echo(f"FAIL  database: {checked.state}")
        click.echo(f"      fix: {checked.fix}")
    results = check_scopes(settings)
    for r in results:
        if _json(ctx):
            click.echo(summary.dumps({"event": "scope_checked", "scope": str(r.scope), "ok": r.ok,
                                      "status": r.status, "message": r.message, "fix": r.fix}))
        elif r.ok:
            click.echo(f"ok    {r.scope}")
        else:
            click.echo(f"FAIL  {r.scope}: {r.message}")
            click.echo(f"      fix: {r.fix}")
    failed = [r for r in results if not r.ok]
    code = ExitCode.OK
    if failed and failed[0].status in (401, 402):
        code = ExitCode.ASANA_REFUSED
    elif not checked.ok:
        code = ExitCode.USAGE
    elif failed:
        code = ExitCode.SCOPE_FAILED
    if _json(ctx):
        click.echo(summary.dumps({"event": "checked", "config": settings.source,
                                  "database": database, "database_ok": checked.ok,
                                  "scopes": len(results), "passed": len(results) - len(failed),
                                  "exit_code": int(code)}))
    else:
        click.echo(f"{len(results) - len(failed)} of {count(len(results), 'scope')} passed"
                   f"{'' if checked.ok else '; the database failed'}")
    ctx.exit(int(code))


@cli.command(short_help="Try it without a token: a simulated Asana into a SQLite file.")
@click.option("--database-url", default=DEMO_DATABASE_URL, show_default=True,
              help="Where to load the demo data.")
@click.option("--entries", default=2000, show_default=True, help="How many entries to simulate.")
@click.pass_context
def demo(ctx: click.Context, database_url: str, entries: int) -> None:
    """Sync a simulated Asana into a local SQLite file: try the tool without a token.

    Exit status: 0 the demo ran, 2 the database URL cannot be used, 5 the database
    failed during the run.
    """
    _run_command(ctx, "demo", None)
    _quiet_by_default(ctx)
    with _progress(ctx, "demo") as progress:
        result = run_demo(database_url, entries=entries, progress=progress)
    top = top_projects(database_url, 5)
    if _json(ctx):
        click.echo(summary.dumps({"event": "demo", "database": _where(database_url),
                                  "top_projects": [{"project": n, "hours": h} for n, h in top]}))
        _finish(ctx, result)
    click.echo(f"database: {_where(database_url)}")
    click.echo("hours per project, top five:")
    for name, hours in top:
        click.echo(f"  {hours:9.1f}  {name}")
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        click.echo("query it yourself:")
        click.echo(f"  sqlite3 {path} \"SELECT attributable_to_name, SUM(duration_hours) AS hours "
                   "FROM v_time_tracking_entries GROUP BY 1 ORDER BY 2 DESC LIMIT 5\"")
    _finish(ctx, result)


def _quiet_by_default(ctx: click.Context) -> None:
    """Warnings and errors only, unless --log-level (or its environment variable) asks
    for more: the demo's result is what it prints, not the run's INFO lines."""
    if ctx.parent.get_parameter_source("log_level") is click.core.ParameterSource.DEFAULT:
        log.setLevel(logging.WARNING)


def _where(url: str) -> str:
    if url.startswith("sqlite:///"):
        return str(Path(url.removeprefix("sqlite:///")).resolve())
    return db.mask_url(url)


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
