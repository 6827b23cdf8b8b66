"""Real processes: SIGKILL at random moments, SIGTERM, and the token nowhere in sight."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.store import engines, schema
from etl.simulator import AsanaSimulator, Dataset
from tests.helpers import all_scopes, expected_rows, stored_rows

TOKEN = "0/crash-test-token-7f3a9c"


@pytest.fixture
def server():
    data = Dataset.generate(seed=21, entries=600, users=10, projects=6, portfolios=2, tasks=40)
    with AsanaSimulator(data, token=TOKEN, latency=0.03) as server:
        yield server


def write_config(tmp_path, server, database_url) -> str:
    data = server.dataset
    scopes = all_scopes(data)
    by_key = {"user": "users", "project": "projects", "portfolio": "portfolios"}
    lines = [f'[asana]\nbase_url = "{server.base_url}"\npage_size = 10\nmax_retries = 2\n'
             "backoff_max_seconds = 0.05\nrequests_per_minute = 1000000\n",
             f'[database]\nurl = "{database_url}"\n', "[scopes]",
             f'workspace = "{data.workspace_gid}"']
    for kind, key in by_key.items():
        gids = ", ".join(f'"{s.gid}"' for s in scopes if s.kind == kind)
        lines.append(f"{key} = [{gids}]")
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def start(config: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "ASANA_ACCESS_TOKEN": TOKEN}
    return subprocess.Popen([sys.executable, "-m", "etl", "--log-level", "debug", "--config",
                             config, *args, "sync"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out + err


def assert_equal_to_server(engine, data: Dataset) -> None:
    assert stored_rows(engine) == expected_rows(data)
    everything = stored_rows(engine, live_only=False)
    assert not (set(everything) - set(stored_rows(engine))) & set(data.entries)  # no false deletion


def change_the_server(data: Dataset, rng: random.Random) -> None:
    gids = sorted(data.entries)
    data.delete_entry(rng.choice(gids))
    data.edit_entry(rng.choice(gids[1:]) if gids[0] not in data.entries else rng.choice(gids),
                    duration_minutes=rng.randint(1, 600))
    data.add_entry(rng.choice(list(data.tasks)), rng.choice(list(data.users)), rng.randint(1, 99),
                   dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(300)))


def run_status_counts(engine) -> dict[str, int]:
    t = schema.sync_runs
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all())


def latest_run_id(engine) -> int | None:
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.max(schema.sync_runs.c.id)))
    except sa.exc.SQLAlchemyError:  # not created yet, or locked by the victim's migration
        return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def assert_gone(pids: list[int], within: float = 5.0) -> None:
    """Each process has exited (gone, or a zombie nobody reaped yet)."""
    deadline = time.monotonic() + within
    for pid in pids:
        while True:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state in ("Z", "X"):
                break
            assert time.monotonic() < deadline, f"process {pid} outlived its run"
            time.sleep(0.02)


def sigkill_loop(tmp_path, server, database_url, kills: int, seed: int) -> None:
    config = write_config(tmp_path, server, database_url)
    rng = random.Random(seed)
    engine = engines.make_engine(database_url)
    outputs = []
    interrupted = watched = 0
    for _ in range(kills):
        runs_before = latest_run_id(engine)
        victim = start(config)
        # a random moment once the run has begun, not a fixed delay: how long the
        # process takes to start, or the run to finish, depends on the machine
        deadline = time.monotonic() + 60
        while latest_run_id(engine) == runs_before and victim.poll() is None:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        fetchers = children(victim.pid)
        victim.send_signal(signal.SIGKILL)
        code, output = finish(victim)
        outputs.append(output)
        interrupted += code == -signal.SIGKILL
        assert_gone(fetchers)  # the fetcher process dies with its run
        watched += len(fetchers)
        change_the_server(server.dataset, rng)
        code, output = finish(start(config))
        outputs.append(output)
        assert code == 0, output
        assert_equal_to_server(engine, server.dataset)
        assert "running" not in run_status_counts(engine)
    assert interrupted >= kills // 2, "most kills should land mid-run"
    assert watched >= 1, "no fetcher process was seen to outlive its run or not"
    assert run_status_counts(engine).get("abandoned", 0) >= 1
    for output in outputs:
        assert TOKEN not in output
    engine.dispose()


@pytest.mark.slow
def test_ten_sigkills_then_reruns_leave_the_tables_equal_to_the_server(tmp_path, server):
    sigkill_loop(tmp_path, server, f"sqlite:///{tmp_path / 'crash.db'}", kills=10, seed=7)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_killed_run_never_blocks_the_next_one_on_servers(tmp_path, server, backend):
    from tests.conftest import private_database

    with private_database(backend) as url:
        sigkill_loop(tmp_path, server, url, kills=2, seed=3)


def test_sigterm_rolls_back_the_page_and_records_the_run_failed(tmp_path, server):
    url = f"sqlite:///{tmp_path / 'term.db'}"
    config = write_config(tmp_path, server, url)
    process = start(config)
    engine = engines.make_engine(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until it is loading pages
        try:
            with engine.connect() as conn:
                if conn.scalar(sa.select(sa.func.sum(schema.sync_run_scopes.c.pages))):
                    break
        except sa.exc.OperationalError:
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    code, output = finish(process)
    assert code == 128 + signal.SIGTERM, output
    assert "interrupted by SIGTERM" in output and "Traceback" not in output
    assert any(line.startswith("sync failed: ") for line in output.splitlines())  # what it did
    with engine.connect() as conn:
        run = conn.execute(sa.select(schema.sync_runs)).one()
        entries = conn.scalar(sa.select(sa.func.count()).select_from(schema.time_tracking_entries))
        counted = conn.scalar(sa.select(schema.sync_runs.c.inserted))
    assert run.status == "failed" and run.error == "interrupted by SIGTERM"
    assert entries == counted  # the bookkeeping matches what was committed
    code, output = finish(start(config))
    assert code == 0
    assert_equal_to_server(engine, server.dataset)
    engine.dispose()


def test_the_token_is_stored_nowhere(tmp_path, server):
    url = f"sqlite:///{tmp_path / 'secret.db'}"
    config = write_config(tmp_path, server, url)
    bad = next(iter(server.dataset.entries))
    server.dataset.edit_entry(bad, duration_minutes="not a number")  # a rejected record
    code, output = finish(start(config))
    assert code == 0 and TOKEN not in output
    server.add_fault(500, times=1000)
    code, output = finish(start(config))
    assert code == 1 and TOKEN not in output
    engine = engines.make_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                assert TOKEN not in repr(tuple(row)), table.name
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.rejected_records)) >= 1
    engine.dispose()
    help_text = subprocess.run([sys.executable, "-m", "etl", "sync", "--help"], capture_output=True,
                               text=True, env={**os.environ, "ASANA_ACCESS_TOKEN": TOKEN}).stdout
    assert TOKEN not in help_text
