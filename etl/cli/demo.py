"""`asana-etl demo`: a simulated Asana on loopback, synced into a local SQLite file, with
every `[details]` on (the simulated list returns the entries' details, so they cost no
request of their own), and what finance asks of it: billable and approved hours."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

import click

from etl.asana.client import Sleep
from etl.cli import summary
from etl.cli.app import cli, json_output, log
from etl.cli.sync import finish_run, progress_for, start_run_command
from etl.config import AsanaSettings, DetailsSettings, Scope, Secret, Settings
from etl.run.pipeline import Progress, run_sync
from etl.run.result import RunResult
from etl.store import engines
from etl.store.engines import make_engine

if TYPE_CHECKING:
    from etl.simulator import Dataset

DEMO_DATABASE_URL = "sqlite:///asana_demo.db"


def demo_scopes(data: Dataset) -> list[Scope]:
    """A realistic, overlapping set: every user, some projects, every portfolio, a task."""
    scopes = [Scope("user", gid) for gid in data.users]
    scopes += [Scope("project", gid) for gid in list(data.projects)[:4]]
    scopes += [Scope("portfolio", gid) for gid in data.portfolios]
    scopes.append(Scope("task", next(iter(data.tasks))))
    return scopes


def run_demo(
    database_url: str = DEMO_DATABASE_URL, *, entries: int = 2000, sleep: Sleep = time.sleep,
    progress: Progress | None = None,
) -> RunResult:
    """Start the simulator, sync it into `database_url` (reporting to `progress` as
    run_sync does), stop the simulator."""
    # imported here: every other command would pay for the simulator's imports
    from etl.simulator import DEMO_TOKEN, AsanaSimulator, Dataset

    data = Dataset.generate(seed=7, entries=entries)
    with AsanaSimulator(data) as simulator:
        simulator.list_extra_fields = "return"
        settings = Settings(
            asana=AsanaSettings(base_url=simulator.base_url, token=Secret(DEMO_TOKEN)),
            database_url=database_url,
            scopes=tuple(demo_scopes(data)),
            details=DetailsSettings(entries=True, max_requests=0, categories=True,
                                    timesheets=True, rates=True, workspace=data.workspace_gid),
            source="(demo)",
        )
        return run_sync(settings, command="demo", sleep=sleep, progress=progress)


def top_projects(database_url: str, limit: int = 5) -> list[tuple[str, float, float, float]]:
    """Hours per project, most first, with their billable and approved hours, from the
    BI view the demo just filled."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT COALESCE(attributable_to_name, '(no project)'), SUM(hours) AS total, "
                "SUM(billable_hours), SUM(approved_hours) FROM v_monthly_hours_by_project "
                "GROUP BY attributable_to_gid, attributable_to_name "
                "ORDER BY total DESC LIMIT :limit"), {"limit": limit}).all()
    finally:
        engine.dispose()
    return [(name if len(name) <= 60 else name[:57] + "...", float(hours), float(billable),
             float(approved)) for name, hours, billable, approved in rows]


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
    start_run_command(ctx, "demo", None)
    _quiet_by_default(ctx)
    with progress_for(ctx, "demo") as progress:
        result = run_demo(database_url, entries=entries, progress=progress)
    top = top_projects(database_url, 5)
    if json_output(ctx):
        click.echo(summary.dumps({"event": "demo", "database": _where(database_url),
                                  "top_projects": [{"project": n, "hours": h, "billable": b,
                                                    "approved": a} for n, h, b, a in top]}))
        finish_run(ctx, result)
    click.echo(f"database: {_where(database_url)}")
    click.echo("hours per project, top five:")
    click.echo(f"  {'hours':>9}  {'billable':>9}  {'approved':>9}  project")
    for name, hours, billable, approved in top:
        click.echo(f"  {hours:9.1f}  {billable:9.1f}  {approved:9.1f}  {name}")
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        click.echo("query it yourself:")
        click.echo(f"  sqlite3 {path} \"SELECT attributable_to_name, SUM(duration_hours) AS hours "
                   "FROM v_time_tracking_entries GROUP BY 1 ORDER BY 2 DESC LIMIT 5\"")
    finish_run(ctx, result)


def _quiet_by_default(ctx: click.Context) -> None:
    """Warnings and errors only, unless --log-level (or its environment variable) asks
    for more: the demo's result is what it prints, not the run's INFO lines."""
    if ctx.parent.get_parameter_source("log_level") is click.core.ParameterSource.DEFAULT:
        log.setLevel(logging.WARNING)


def _where(url: str) -> str:
    if url.startswith("sqlite:///"):
        return str(Path(url.removeprefix("sqlite:///")).resolve())
    return engines.mask_url(url)
