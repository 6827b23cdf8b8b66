"""The fetcher process starts by `spawn` and `forkserver` as well as `fork`: whatever it
needs crosses the boundary pickled (the settings, the token as a Secret, the injected
sleep, the split threshold, the log level), and it still ends with its run.

macOS and Windows start it by `spawn`; CI also runs the sync, kill and lock tests with
`ASANA_ETL_FETCHER_START=spawn` (see README, Development)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from etl.config import Scope
from etl.errors import ConfigError, LockError
from etl.run import fetcher
from etl.run.fetcher import START_METHOD_ENV, start_method
from etl.run.pipeline import run_sync
from etl.store import engines
from etl.store.lock import scope_locks
from tests.helpers import expected_rows, stored_rows
from tests.test_crash import (  # noqa: F401  (server: the crash tests' simulated Asana)
    TOKEN,
    assert_equal_to_server,
    assert_gone,
    children,
    finish,
    latest_run_id,
    server,
    write_config,
)

METHODS = [m for m in ("spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]


def test_the_platform_chooses_unless_the_environment_does(monkeypatch):
    monkeypatch.delenv(START_METHOD_ENV, raising=False)
    monkeypatch.setattr(fetcher.sys, "platform", "linux")
    assert start_method() == "fork"
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(fetcher.sys, "platform", platform)
        assert start_method() == "spawn"
    monkeypatch.setattr(fetcher.sys, "platform", "linux")
    monkeypatch.setenv(START_METHOD_ENV, "forkserver")
    assert start_method() == "forkserver"
    monkeypatch.setenv(START_METHOD_ENV, "teleport")
    with pytest.raises(ConfigError, match=f"{START_METHOD_ENV}=teleport: this platform starts"):
        start_method()


@pytest.mark.parametrize("method", METHODS)
def test_a_sync_with_the_fetcher_started_by(method, asana_server, make_settings, engine, sleep,
                                            splitting, monkeypatch, caplog):
    monkeypatch.setenv(START_METHOD_ENV, method)
    caplog.set_level(logging.DEBUG, logger="etl")
    # one listing, so that the budget has room to split it on its first page
    workspace = Scope("workspace", asana_server.dataset.workspace_gid)
    result = run_sync(make_settings([workspace], page_size=20), sleep=sleep)
    assert result.status == "succeeded", result.failed_scopes
    assert stored_rows(engine) == expected_rows(asana_server.dataset)
    fetched = [r for r in caplog.records if r.name.startswith("etl.run.listings")]
    assert any("split into" in r.getMessage() for r in fetched), (
        "the split threshold the run set did not reach the fetcher")
    assert any(r.getMessage() == f"the fetcher process started by {method}"
               for r in caplog.records)


@pytest.mark.parametrize("method", METHODS)
def test_a_run_holding_no_lock_stops_its_fetcher(method, make_settings, engine, sleep,
                                                 monkeypatch):
    monkeypatch.setenv(START_METHOD_ENV, method)
    settings = make_settings()
    with scope_locks(engine, settings.scopes[:1], "sync"):
        before = set(multiprocessing.active_children())
        with pytest.raises(LockError):
            run_sync(settings, sleep=sleep)
    assert set(multiprocessing.active_children()) <= before


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_spawned_run_takes_its_fetcher_along_and_the_rerun_is_exact(
    server, tmp_path, database_url  # noqa: F811
):
    config = write_config(tmp_path, server, database_url)
    env_method = {START_METHOD_ENV: "spawn"}
    engine = engines.make_engine(database_url)
    killed = 0
    for _ in range(3):
        before = latest_run_id(engine)
        victim = _start(config, env_method)
        deadline = time.monotonic() + 60
        while latest_run_id(engine) == before and victim.poll() is None:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.01)
        time.sleep(0.1)
        fetchers = children(victim.pid)
        victim.send_signal(signal.SIGKILL)
        code, _ = finish(victim)
        killed += code == -signal.SIGKILL
        assert_gone(fetchers)  # the spawned fetcher (and spawn's resource tracker) go too
    code, output = finish(_start(config, env_method))
    assert code == 0, output
    assert killed >= 1
    assert_equal_to_server(engine, server.dataset)
    engine.dispose()


def _start(config: str, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "ASANA_ACCESS_TOKEN": TOKEN, **extra_env}
    return subprocess.Popen([sys.executable, "-m", "etl", "--config", config, "sync"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_script_without_a_main_guard_is_told_why_under_spawn(server, tmp_path,  # noqa: F811
                                                                database_url):
    config = write_config(tmp_path, server, database_url)
    script = tmp_path / "nightly.py"
    script.write_text("from etl import load_settings, run_sync\n"
                      f"print(run_sync(load_settings({config!r})).status)\n", encoding="utf-8")
    env = {**os.environ, "ASANA_ACCESS_TOKEN": TOKEN, START_METHOD_ENV: "spawn"}
    unguarded = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                               text=True, timeout=120)
    assert unguarded.returncode != 0
    assert "a script must call run_sync under `if __name__ == \"__main__\":`" in unguarded.stderr
    script.write_text("from etl import load_settings, run_sync\n"
                      "if __name__ == '__main__':\n"
                      f"    print(run_sync(load_settings({config!r})).status)\n", encoding="utf-8")
    guarded = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert guarded.returncode == 0 and guarded.stdout.strip() == "succeeded", guarded.stderr
