"""Helpers for tests: what the server holds vs. what the tables hold."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import sqlalchemy as sa

from etl.config import Scope
from etl.store.schema import time_tracking_entries
from etl.simulator import DEMO_TOKEN, Dataset

TOKEN = DEMO_TOKEN


def all_scopes(data: Dataset) -> list[Scope]:
    """Every user, project and portfolio: heavy overlap, every entry reachable."""
    return (
        [Scope("user", g) for g in data.users]
        + [Scope("project", g) for g in data.projects]
        + [Scope("portfolio", g) for g in data.portfolios]
        + [Scope("workspace", data.workspace_gid)]
    )


def expected_rows(data: Dataset) -> dict[str, dict[str, Any]]:
    """What `time_tracking_entries` must hold, built from the server's own data
    (not through etl.transform), for field-by-field comparison."""
    return {
        e.gid: {
            "gid": e.gid,
            "duration_minutes": e.duration_minutes,
            "entered_on": e.entered_on,
            "attributable_to_gid": e.attributable_to,
            "attributable_to_name": data.projects[e.attributable_to] if e.attributable_to else None,
            "created_by_gid": e.user_gid,
            "created_by_name": data.users[e.user_gid],
        }
        for e in data.entries.values()
    }


def stored_rows(engine: sa.Engine, *, live_only: bool = True) -> dict[str, dict[str, Any]]:
    t = time_tracking_entries
    columns = [
        t.c.gid, t.c.duration_minutes, t.c.entered_on, t.c.attributable_to_gid,
        t.c.attributable_to_name, t.c.created_by_gid, t.c.created_by_name,
    ]
    query = sa.select(*columns)
    if live_only:
        query = query.where(t.c.deleted_at.is_(None))
    with engine.connect() as conn:
        return {r.gid: dict(r._mapping) for r in conn.execute(query)}


def table_snapshot(engine: sa.Engine, *, skip_prefix: str = "sync_run") -> dict[str, list[tuple]]:
    """Every row of every table (but the run bookkeeping), to prove a run wrote nothing."""
    meta = sa.MetaData()
    meta.reflect(engine)
    snapshot = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name.startswith(skip_prefix):
                continue
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns or table.columns))
            snapshot[name] = [tuple(r) for r in rows]
    return snapshot


def tuple_counters(engine: sa.Engine, runs_inserted: int | None = None) -> dict[str, tuple[int, int, int]]:
    """PostgreSQL's (n_tup_ins, n_tup_upd, n_tup_del) per table of the current schema.

    Statistics reach the view shortly after the writing backend flushes them (at the
    latest when it exits); pass `runs_inserted`, the `sync_runs` insert count a finished
    run must show, to wait until they have arrived.
    """
    query = sa.text(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
        "WHERE schemaname = current_schema()"
    )
    deadline = time.monotonic() + 10
    while True:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            counters = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(query)}
        if runs_inserted is None or counters["sync_runs"][0] >= runs_inserted:
            return counters
        if time.monotonic() > deadline:
            raise AssertionError(f"statistics did not arrive: {counters}")
        time.sleep(0.1)


def listed(key: str, gids: list[str]) -> str:
    """A `[scopes]` line: `users = ["1", "2"]`."""
    return f"{key} = [" + ", ".join(f'"{g}"' for g in gids) + "]"


def start_sync(tmp_path, name: str, server, database_url: str, scopes: str,
               page_size: int = 10, log_level: str = "info"):
    """`asana-etl sync` in a process of its own, over `scopes` (a `[scopes]` body); its
    output (both streams) in `.communicate()[0]`."""
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f'[asana]\nbase_url = "{server.base_url}"\npage_size = {page_size}\n'
        f"requests_per_minute = 1000000\nmax_retries = 1\nbackoff_max_seconds = 0.01\n"
        f"[scopes]\n{scopes}\n", encoding="utf-8")
    env = {**os.environ, "ASANA_ACCESS_TOKEN": TOKEN, "ASANA_ETL_DATABASE_URL": database_url}
    return subprocess.Popen([sys.executable, "-m", "etl", "--config", str(config),
                             "--log-level", log_level, "sync"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
