"""`asana-etl sync` and `asana-etl backfill`: the runs, over `etl.run.pipeline`; what
every run's command does at its end (failed scopes, metrics, the summary, the exit
code)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import click

from etl.cli import pipes, summary
from etl.cli.app import cli, json_output, log, settings_of
from etl.cli.metrics import write_metrics
from etl.cli.params import Day, gids
from etl.config import MAX_DAYS, DateWindow, Scope
from etl.errors import ConfigError, ExitCode
from etl.run.pipeline import run_backfill, run_sync
from etl.run.result import RunResult


def start_run_command(ctx: click.Context, command: str, summary_file: str | None) -> None:
    """This command is a run: whatever ends it, its summary goes to stdout (with
    `--log-format json`) and to `summary_file`."""
    ctx.obj.update(run_command=command, summary_file=summary_file)


def finish_run(ctx: click.Context, result: RunResult, metrics_file: str | None = None) -> None:
    if not json_output(ctx):  # as JSON, the scope_failed log lines say it
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
    click.echo(summary.dumps(document) if json_output(ctx) else result.summary())
    ctx.exit(int(result.exit_code))


def progress_for(ctx: click.Context, title: str) -> contextlib.AbstractContextManager[Any]:
    """Live progress on stderr when it is a terminal (and logs are text); nothing for
    cron mail, log files or log shippers."""
    terminal = ctx.obj.get("terminal")
    if terminal is None:
        return contextlib.nullcontext()
    from etl.cli.progress import TerminalProgress

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
              help="Read Asana and report what would be inserted, updated, deleted and rejected; "
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
        from etl.run.dryrun import run_dry_run

        dry = run_dry_run(settings_of(ctx), recent_days=recent_days)
        if json_output(ctx):
            click.echo(summary.dumps(dry.document()))
        else:
            for scope, error in dry.failed:
                click.echo(f"error: scope {scope} failed: {error}", err=True)
            click.echo(dry.summary())
        ctx.exit(int(ExitCode.SCOPE_FAILED if dry.failed else ExitCode.OK))
    start_run_command(ctx, "sync", summary_file)
    settings = settings_of(ctx)
    with progress_for(ctx, "sync") as progress, settled():
        result = run_sync(settings, recent_days=recent_days, migrate=not no_migrate,
                          progress=progress)
    finish_run(ctx, result, metrics_file)


@cli.command(short_help="A one-off load of some scopes, or of a range of days.")
@click.option("--user", "users", multiple=True, callback=gids, help="A user gid (repeatable).")
@click.option("--project", "projects", multiple=True, callback=gids, help="A project gid (repeatable).")
@click.option("--portfolio", "portfolios", multiple=True, callback=gids, help="A portfolio gid (repeatable).")
@click.option("--task", "tasks", multiple=True, callback=gids, help="A task gid (repeatable).")
@click.option("--workspace", "workspaces", multiple=True, callback=gids, help="A workspace gid (repeatable).")
@click.option("--since", type=Day(),
              help="Read only entries entered on or after this date (asked of Asana).")
@click.option("--until", type=Day(),
              help="Read only entries entered on or before this date (asked of Asana).")
@click.option("--details", "reread_details", is_flag=True,
              help="Read again the details of every entry of these days, whatever their age "
                   "([details] entries must be on; within [details] max_requests).")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations first.")
@metrics_option
@summary_option
@click.pass_context
def backfill(ctx: click.Context, users, projects, portfolios, tasks, workspaces, since, until,
             reread_details: bool, no_migrate: bool, metrics_file: str | None,
             summary_file: str | None) -> None:
    """A one-off load of the scopes named here (else every configured scope), of the
    days between --since and --until (else all); deletions are looked for in those days
    only. With --details, the entries' details of those days are read again.

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
    start_run_command(ctx, "backfill", summary_file)
    window = DateWindow(since, until)
    settings = settings_of(ctx)
    if reread_details and not settings.details.entries:
        raise ConfigError(f"backfill --details reads entries' details: set [details] entries "
                          f"= true in {settings.source}")
    with progress_for(ctx, "backfill") as progress, settled():
        result = run_backfill(settings, scopes=list(dict.fromkeys(named)) or None,
                              window=window, migrate=not no_migrate, progress=progress,
                              reread_details=reread_details)
    finish_run(ctx, result, metrics_file)


@contextlib.contextmanager
def settled() -> Iterator[None]:
    """The run with what exists before it (modules, configuration: objects that live as
    long as the command) out of the cycle collector's sight: its collections during the
    run scanned them each time, for nothing. They are given back after it."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
