"""`asana-etl check`: the preflight, printed: the config, the database, then Asana's
side (the token, the plan, every scope), each failure with its fix."""

from __future__ import annotations

import click

from etl.asana.check import DetailsCheck, check_details, check_scopes
from etl.cli import summary
from etl.cli.app import cli, json_output, settings_of
from etl.errors import ConfigError, ExitCode
from etl.store import engines
from etl.config import Settings
from etl.store.check import check_database, details_backlog
from etl.wording import count


@cli.command(short_help="Preflight: config, database, token, plan and every scope.")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Preflight: the config is valid, the database can be used (reachable, and where
    its schema stands), Asana accepts the token and the plan, and every configured scope
    exists and is visible. One small request per scope; writes nothing.

    Exit status: 0 everything passed, 1 a scope failed, 2 configuration or database,
    3 Asana refused the token or plan.
    """
    settings = settings_of(ctx)
    database = engines.mask_url(settings.database_url)
    if not json_output(ctx):
        click.echo(f"config {settings.source}: valid, {count(len(settings.scopes), 'scope')}, "
                   f"database {database}")
    if not settings.scopes:
        raise ConfigError(f"no scopes to check: add some under [scopes] in {settings.source}")
    checked = check_database(settings)
    if json_output(ctx):
        click.echo(summary.dumps({"event": "database_checked", "database": checked.database,
                                  "ok": checked.ok, "state": checked.state, "fix": checked.fix}))
    elif checked.ok:
        click.echo(f"ok    database: {checked.state}")
    else:
        click.echo(f"FAIL  database: {checked.state}")
        click.echo(f"      fix: {checked.fix}")
    results = check_scopes(settings)
    for r in results:
        if json_output(ctx):
            click.echo(summary.dumps({"event": "scope_checked", "scope": str(r.scope), "ok": r.ok,
                                      "status": r.status, "message": r.message, "fix": r.fix}))
        elif r.ok:
            click.echo(f"ok    {r.scope}")
        else:
            click.echo(f"FAIL  {r.scope}: {r.message}")
            click.echo(f"      fix: {r.fix}")
    failed = [r for r in results if not r.ok]
    if settings.details.entries and not failed:
        _report_details(ctx, settings, check_details(settings))
    code = ExitCode.OK
    if failed and failed[0].status in (401, 402):
        code = ExitCode.ASANA_REFUSED
    elif not checked.ok:
        code = ExitCode.USAGE
    elif failed:
        code = ExitCode.SCOPE_FAILED
    if json_output(ctx):
        click.echo(summary.dumps({"event": "checked", "config": settings.source,
                                  "database": database, "database_ok": checked.ok,
                                  "scopes": len(results), "passed": len(results) - len(failed),
                                  "exit_code": int(code)}))
    else:
        click.echo(f"{len(results) - len(failed)} of {count(len(results), 'scope')} passed"
                   f"{'' if checked.ok else '; the database failed'}")
    ctx.exit(int(code))


def _report_details(ctx: click.Context, settings: Settings, found: DetailsCheck) -> None:
    """What `[details] entries` will cost: which details this workspace gives, whether
    the list carries them, and the first read of the backlog in minutes of the token."""
    backlog = details_backlog(settings) if found.per_entry else 0
    rate = settings.asana.requests_per_minute
    minutes = None if backlog is None else backlog / rate
    if json_output(ctx):
        click.echo(summary.dumps({
            "event": "details_checked", "list": found.list_answer,
            "missing": None if found.missing is None else list(found.missing),
            "problem": found.problem, "backlog": backlog, "minutes": minutes}))
        return
    how = ("the list returns them: no request an entry" if not found.per_entry else
           f"the list {found.list_answer} their fields: one request an entry")
    click.echo(f"ok    details: {how}")
    if found.problem:
        click.echo(f"      could not tell more: {found.problem}")
    elif found.missing:
        click.echo(f"      this workspace gives no {' or '.join(found.missing)}: they come with "
                   "Asana's Timesheets & Budgets add-on (stored as null without it)")
    elif found.missing is not None:
        click.echo("      this workspace gives every detail (the Timesheets & Budgets add-on is on)")
    if backlog is None:
        click.echo("      first read: unknown until the first sync has loaded the entries")
    elif found.per_entry:
        cap = settings.details.max_requests
        runs = f", over {-(-backlog // cap)} runs at [details] max_requests = {cap:,}" if cap else ""
        click.echo(f"      first read: {count(backlog, 'entry')} × 1 request ≈ {minutes:,.1f} min "
                   f"at {rate:,} requests a minute{runs}")

