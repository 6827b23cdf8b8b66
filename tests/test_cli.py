"""The command line: exit codes of the CONTRACT, one-line errors, summaries, no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.store import engines, schema
from etl.cli import cli
from tests.helpers import TOKEN, expected_rows, stored_rows

SECRET = TOKEN


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("ASANA_ACCESS_TOKEN", "ASANA_ETL_CONFIG", "ASANA_ETL_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    def invoke(*args: str, env: dict | None = None):
        return CliRunner().invoke(cli, list(args), env={"ASANA_ACCESS_TOKEN": SECRET, **(env or {})},
                                  catch_exceptions=False)

    return invoke


def config_writer(tmp_path, server, database_url):
    """write(scopes, extra, **asana): a config file for the simulator; `asana` values are
    raw TOML and replace the defaults, `extra` lines go at the end of [asana]."""

    def write(scopes: str | None = None, extra: str = "", **asana: str) -> Path:
        data = server.dataset
        scopes = scopes if scopes is not None else (
            f'workspace = "{data.workspace_gid}"\nusers = {json.dumps(list(data.users)[:3])}'
        )
        values = {"base_url": f'"{server.base_url}"', "page_size": "50",
                  "requests_per_minute": "1000000", **asana}
        lines = "\n".join(f"{key} = {value}" for key, value in values.items())
        path = tmp_path / "config.toml"
        path.write_text(
            f'[asana]\n{lines}\n{extra}\n[database]\nurl = "{database_url}"\n'
            f"[scopes]\n{scopes}\n", encoding="utf-8"
        )
        return path

    return write


@pytest.fixture
def config(tmp_path, asana_server, database_url):
    return config_writer(tmp_path, asana_server, database_url)


@pytest.fixture
def sqlite_config(tmp_path, asana_server):
    """For tests about the config itself: the database backend does not matter."""
    return config_writer(tmp_path, asana_server, f"sqlite:///{tmp_path / 'cli.db'}")


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_sync_loads_and_prints_one_summary_line(run, config, asana_server, engine):
    result = run("--config", str(config()), "sync")
    assert result.exit_code == 0, result.output
    summary = last_line(result.stdout)
    assert summary.startswith("sync succeeded: 4 scopes, ")
    for word in ("entries seen", "inserted", "updated", "unchanged", "rejected", " s"):
        assert word in summary
    assert stored_rows(engine) == expected_rows(asana_server.dataset)


def test_config_file_from_environment_and_default_path(run, sqlite_config, tmp_path):
    path = sqlite_config()
    assert run("sync", env={"ASANA_ETL_CONFIG": str(path)}).exit_code == 0
    assert run("sync").exit_code == 0  # ./config.toml in the current folder


def test_a_failing_scope_exits_1_and_the_others_load(run, config, asana_server, engine):
    data = asana_server.dataset
    path = config(f'workspace = "{data.workspace_gid}"\nprojects = ["999"]')
    result = run("--config", str(path), "sync")
    assert result.exit_code == 1
    assert "scope project:999 failed: HTTP 404: attributable_to: Unknown object: 999" in result.stderr
    assert last_line(result.stdout).startswith("sync partial: 2 scopes (1 failed)")
    assert stored_rows(engine) == expected_rows(data)


def test_a_refused_token_exits_3(run, config, engine):
    result = run("--config", str(config()), "sync", env={"ASANA_ACCESS_TOKEN": "wrong-token-value"})
    assert result.exit_code == 3
    assert "refused the token" in result.stderr
    assert "wrong-token-value" not in result.output
    assert "Traceback" not in result.output


def test_a_plan_without_time_tracking_exits_3(run, config, asana_server):
    asana_server.payment_required = True
    result = run("--config", str(config()), "sync")
    assert result.exit_code == 3 and "paid plan" in result.stderr


@pytest.mark.parametrize(
    ("asana", "extra", "scopes", "message"),
    [
        ({}, "bogus = 1", None, "[asana] bogus: unknown key"),
        ({}, "", 'users = ["12x"]', "[scopes] users[0]: must be a gid"),
        ({}, "token = 'abc'", None, "[asana] token: the token must not be stored"),
        ({"timeout_seconds": "0"}, "", None, "timeout_seconds: must be greater than 0"),
        ({"page_size": "101"}, "", None, "page_size: must be between 1 and 100 (got 101)"),
        ({"page_size": "'100'"}, "", None, "page_size: must be an integer (got a string)"),
        ({"base_url": "'http://asana.example.com/api/1.0'"}, "", None,
         "only allowed to a loopback host"),
        ({}, "max_retries =", None, "not valid TOML: Invalid value (at line 5, column 14)"),
    ],
)
def test_config_errors_exit_2_naming_the_problem(run, sqlite_config, asana, extra, scopes, message,
                                                 tmp_path, asana_server):
    path = sqlite_config(scopes, extra, **asana)
    result = run("--config", str(path), "sync")
    assert result.exit_code == 2
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1  # one clear line
    assert asana_server.requests == []  # nothing was read ...
    assert list(tmp_path.glob("*.db")) == []  # ... or written


def test_missing_config_file_exits_2(run, tmp_path):
    result = run("--config", str(tmp_path / "absent.toml"), "sync")
    assert result.exit_code == 2 and "config file not found" in result.stderr


def test_missing_token_exits_2(run, sqlite_config):
    result = run("--config", str(sqlite_config()), "sync", env={"ASANA_ACCESS_TOKEN": ""})
    assert result.exit_code == 2 and "ASANA_ACCESS_TOKEN" in result.stderr


def test_no_scopes_exits_2(run, sqlite_config):
    result = run("--config", str(sqlite_config(scopes="")), "sync")
    assert result.exit_code == 2 and "no scopes" in result.stderr


def test_unusable_database_url_exits_2_with_the_password_masked(run, config):
    url = "postgresql+psycopg://etl:hunter2secret@127.0.0.1:1/nowhere"
    result = run("--config", str(config()), "sync", env={"ASANA_ETL_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "cannot connect to postgresql+psycopg://etl:***@127.0.0.1:1/nowhere" in result.stderr
    assert "hunter2secret" not in result.output


def test_a_url_no_backend_understands_exits_2(run, sqlite_config):
    result = run("--config", str(sqlite_config()), "sync",
                 env={"ASANA_ETL_DATABASE_URL": "oracle+nothing://u:pw-hidden@host/db"})
    assert result.exit_code == 2 and "pw-hidden" not in result.output
    assert "cannot use the database URL oracle+nothing://u:***@host/db" in result.stderr


@pytest.mark.parametrize("url, corrected", [
    ("postgres://etl:pw-hidden@db.example.com/hours",
     "use postgresql+psycopg://etl:***@db.example.com/hours"),
    ("sqllite:///x.db", "use sqlite:///x.db"),
    ("mysql://etl:pw-hidden@db.example.com/hours", "use mysql+pymysql://etl:***@db.example.com/hours"),
    ("sqlite://x.db", "use sqlite:///x.db"),
    ("x.db", "use sqlite:///x.db"),
])
@pytest.mark.parametrize("command", [["sync"], ["status"], ["db", "upgrade"], ["check"]])
def test_a_mistyped_database_url_exits_2_in_one_line_naming_the_right_form(
    run, sqlite_config, url, corrected, command
):
    result = run("--config", str(sqlite_config()), *command, env={"ASANA_ETL_DATABASE_URL": url})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "pw-hidden" not in result.output
    if command == ["check"]:  # its report: the database's line and its fix
        lines = [line for line in result.stdout.splitlines() if "database:" in line]
    else:
        lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].split(": ", 1)[1].startswith("cannot use the database URL ")
    assert corrected in lines[0]


def test_backfill_with_named_scopes_and_a_window(run, config, asana_server, engine):
    data = asana_server.dataset
    user = next(iter(data.users))
    result = run("--config", str(config()), "backfill", "--user", user,
                 "--since", "2026-02-01", "--until", "2026-02-28")
    assert result.exit_code == 0, result.output
    assert last_line(result.stdout).startswith("backfill succeeded: 1 scope, ")
    rows = stored_rows(engine)
    assert rows and all(r["created_by_gid"] == user for r in rows.values())
    assert all("2026-02-01" <= r["entered_on"].isoformat() <= "2026-02-28" for r in rows.values())


def test_backfill_rejects_a_gid_that_is_not_digits(run, sqlite_config):
    result = run("--config", str(sqlite_config()), "backfill", "--user", "abc")
    assert result.exit_code == 2 and "not a gid" in result.stderr


def test_db_upgrade_on_an_empty_sqlite_file(run, tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = run("db", "upgrade", env={"ASANA_ETL_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    engine = engines.make_engine(url)
    assert {"time_tracking_entries", "sync_runs"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_sync_no_migrate_on_an_empty_database_says_what_to_do(run, config):
    result = run("--config", str(config()), "sync", "--no-migrate")
    assert result.exit_code == 2 and "asana-etl db upgrade" in result.stderr


def test_status_text_json_and_check(run, config, asana_server):
    data = asana_server.dataset
    path = config(f'workspace = "{data.workspace_gid}"\nprojects = ["999"]')
    run("--config", str(path), "sync")
    text = run("--config", str(path), "status")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    header, run_row = lines[1], lines[2]
    assert header.split() == ["run", "command", "status", "started", "(UTC)", "took", "seen",
                              "new", "changed", "unchanged", "deleted", "rejected"]
    assert len(header) == len(run_row) and "partial" in run_row  # columns aligned
    assert re.search(r"T\d\d:\d\d:\d\dZ", run_row)  # ISO 8601, as everywhere
    stale = next(line for line in lines if "project:999" in line and "STALE" in line)
    assert stale.split()[:3] == ["STALE", "project:999", "failed"]
    assert "project:999 last error: HTTP 404: attributable_to: Unknown object" in text.stdout

    as_json = json.loads(run("--config", str(path), "status", "--json").stdout)
    assert as_json["runs"][0]["status"] == "partial"
    assert "T" in as_json["runs"][0]["started_at"]
    scopes = {(s["scope_type"], s["scope_gid"]): s for s in as_json["scopes"]}
    assert scopes[("project", "999")]["stale"] is True
    assert scopes[("workspace", data.workspace_gid)]["stale"] is False

    assert run("--config", str(path), "status", "--check").exit_code == 1
    healthy = config(f'workspace = "{data.workspace_gid}"')
    assert run("--config", str(healthy), "status", "--check").exit_code == 0


def test_demo_runs_end_to_end_without_token_or_config(run, tmp_path):
    result = run("demo", "--entries", "300", env={"ASANA_ACCESS_TOKEN": ""})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "asana_demo.db").is_file()
    assert last_line(result.stdout).startswith("demo succeeded: ")
    engine = engines.make_engine(f"sqlite:///{tmp_path / 'asana_demo.db'}")
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.time_tracking_entries)) == 300
    engine.dispose()


def test_the_token_never_shows_in_any_output(run, config, asana_server):
    path = config(max_retries="1", backoff_max_seconds="0.001")
    ok = run("--log-level", "debug", "--config", str(path), "sync")
    asana_server.add_fault(500, times=100)
    failing = run("--log-level", "debug", "--config", str(path), "sync")
    bad = run("--log-level", "debug", "--log-format", "json", "--config", str(path), "sync",
              env={"ASANA_ACCESS_TOKEN": "0/another-secret"})
    assert ok.exit_code == 0 and failing.exit_code == 1 and bad.exit_code == 3
    for result in (ok, failing, bad):
        assert SECRET not in result.output and "another-secret" not in result.output


@pytest.mark.parametrize("command", [[], ["db"], ["db", "upgrade"], ["sync"], ["backfill"],
                                     ["status"], ["demo"]])
def test_every_command_has_help(run, command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.stdout and len(result.stdout.splitlines()) > 4


def test_version(run):
    assert run("--version").stdout.startswith("asana-etl, version ")


@pytest.mark.parametrize("value, message", [
    ("2026-02-30", "no such date: 2026-02-30"),
    ("2026/02/03", "'2026/02/03' is not a date as YYYY-MM-DD"),
])
def test_an_impossible_or_misshapen_date_says_which(run, sqlite_config, value, message):
    result = CliRunner().invoke(cli, ["--config", str(sqlite_config()), "backfill",
                                      "--since", value])
    assert result.exit_code == 2 and message in result.output


def test_every_command_lists_its_exit_codes_and_the_top_help_is_not_cut(run):
    top = CliRunner().invoke(cli, ["--help"]).output
    assert "..." not in top.split("Commands:")[1]  # each command's summary whole
    for command in (["sync"], ["backfill"], ["status"], ["check"], ["demo"], ["db", "upgrade"]):
        text = CliRunner().invoke(cli, [*command, "--help"]).output
        assert "Exit status: 0" in text, command


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://etl:pw@hidden@nosuchhost.invalid/db",
     "cannot connect to postgresql+psycopg://etl:***@nosuchhost.invalid/db"),
    ("postgresql+psycopg://postgres@127.0.0.1:1/db?password=pwhidden",
     "cannot connect to postgresql+psycopg://postgres@127.0.0.1:1/db?password="),
    ("postgresql+psycopg://etl:pwhidden@127.0.0.1:5432x/db", "its port is not a number"),
])
def test_a_password_never_shows_however_the_url_holds_it(run, sqlite_config, url, shown):
    result = run("--config", str(sqlite_config()), "db", "upgrade",
                 env={"ASANA_ETL_DATABASE_URL": url})
    assert result.exit_code == 2 and shown in result.stderr, result.output
    assert "hidden" not in result.output and "Traceback" not in result.output
