"""`asana-etl status`: recent runs, and each scope's freshness."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from etl.cli.app import cli, json_output, log, settings_of
from etl.cli.logs import iso_default
from etl.errors import ExitCode
from etl.run.pipeline import prepare_database
from etl.config import Settings
from etl.store import runs
from etl.store.details import backlog_size
from etl.wording import count


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
    settings = settings_of(ctx, require_file=False)
    engine = prepare_database(settings.database_url, migrate=False)
    now = runs.utcnow()
    full_days = 2 * settings.sync.full_every_days
    # full_every_days = 0: every sync reads in full, and a scope's last success says it all
    full_stale_after = dt.timedelta(days=full_days) if full_days else None
    with engine.connect() as conn:
        recent = runs.recent_runs(conn, limit)
        scopes = runs.freshness(conn, settings.scopes, dt.timedelta(hours=stale_hours), now,
                                full_stale_after=full_stale_after)
        details = _details(conn, settings) if settings.details.entries else None
    engine.dispose()
    stale = [s for s in scopes if s["stale"] and s["configured"]]
    found = {"runs": recent, "scopes": scopes, "details": details}
    if json_output(ctx):  # one object on one line, like every line of the JSON format
        click.echo(json.dumps(found, default=iso_default, ensure_ascii=False))
    elif as_json:
        click.echo(json.dumps(found, default=iso_default, indent=2))
    else:
        _print_status(recent, scopes, now)
        if details is not None:
            click.echo(f"Entry details: {count(details['backlog'], 'entry')} still to read "
                       f"(about {details['minutes']:,.0f} min of the token's "
                       f"{settings.asana.requests_per_minute:,} requests a minute; "
                       f"[details] max_requests = {settings.details.max_requests or 'no limit'} "
                       "a run)")
    if check and stale:
        message = (f"{len(stale)} scope(s) stale (no success in {stale_hours:g} h"
                   + (f", or no full read in {full_days} days)" if full_days else ")"))
        if json_output(ctx):
            log.error("%s", message, extra={"event": "stale", "fields": {
                "exit_code": int(ExitCode.SCOPE_FAILED),
                "scopes": [f"{s['scope_type']}:{s['scope_gid']}" for s in stale]}})
        else:
            click.echo(message, err=True)
        ctx.exit(int(ExitCode.SCOPE_FAILED))


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


def _details(conn: Any, settings: Settings) -> dict[str, Any]:
    """Entries whose details are still to read (of every scope), and the minutes of the
    token's budget that takes (one request an entry)."""
    backlog = backlog_size(conn)
    return {"backlog": backlog, "minutes": backlog / settings.asana.requests_per_minute}
