"""`asana-etl demo`: a simulated Asana on loopback, synced into a local SQLite file."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import sqlalchemy as sa

from etl.asana import Sleep
from etl.config import AsanaSettings, Scope, Secret, Settings
from etl.db import make_engine
from etl.pipeline import Progress, RunResult, run_sync

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
        settings = Settings(
            asana=AsanaSettings(base_url=simulator.base_url, token=Secret(DEMO_TOKEN)),
            database_url=database_url,
            scopes=tuple(demo_scopes(data)),
            source="(demo)",
        )
        return run_sync(settings, command="demo", sleep=sleep, progress=progress)


def top_projects(database_url: str, limit: int = 5) -> list[tuple[str, float]]:
    """Hours per project, most first, from the BI view the demo just filled."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT COALESCE(attributable_to_name, '(no project)'), SUM(hours) AS total "
                "FROM v_daily_hours_by_project GROUP BY attributable_to_gid, attributable_to_name "
                "ORDER BY total DESC LIMIT :limit"), {"limit": limit}).all()
    finally:
        engine.dispose()
    return [(name if len(name) <= 60 else name[:57] + "...", float(hours)) for name, hours in rows]
