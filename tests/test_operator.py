"""What operators rely on: JSON logs, metrics, the preflight check, progress, docs."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from etl.store import engines, migrate, schema
from etl.cli import cli
from tests.helpers import TOKEN

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def database_url(tmp_path) -> str:  # the backend does not matter here
    return f"sqlite:///{tmp_path / 'ops.db'}"


@pytest.fixture
def config(tmp_path, asana_server, database_url):
    def write(scopes: str) -> str:
        path = tmp_path / "config.toml"
        path.write_text(
            f'[asana]\nbase_url = "{asana_server.base_url}"\nrequests_per_minute = 1000000\n'
            f'max_retries = 1\nbackoff_max_seconds = 0.01\n'
            f'[database]\nurl = "{database_url}"\n[scopes]\n{scopes}\n', encoding="utf-8")
        return str(path)

    return write


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), env={"ASANA_ACCESS_TOKEN": TOKEN},
                              catch_exceptions=False)


def test_json_logs_parse_line_by_line_and_end_with_the_summary(asana_server, config):
    data = asana_server.dataset
    path = config(f'workspace = "{data.workspace_gid}"\nprojects = ["999"]')
    result = invoke("--log-format", "json", "--log-level", "debug", "--config", path, "sync")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert len(lines) > 5
    assert len(lines) == len([ln for ln in result.stderr.splitlines() if ln.startswith("{")])
    for line in lines:
        assert {"time", "level", "logger", "run_id", "scope", "event", "message"} <= set(line)
    assert lines[-1]["event"] == "summary" and lines[-1]["status"] == "partial"
    assert lines[-1]["inserted"] == len(data.entries)
    failed = [ln for ln in lines if ln["event"] == "scope_failed"]
    assert failed[0]["scope"] == "project:999" and "Unknown object" in failed[0]["error"]
    assert all(ln["run_id"] == 1 for ln in lines if ln["event"] in ("scope_finished", "summary"))


def test_text_logs_carry_run_and_scope(asana_server, config):
    path = config(f'workspace = "{asana_server.dataset.workspace_gid}"')
    result = invoke("--config", path, "sync")
    assert f"[run=1 scope=workspace:{asana_server.dataset.workspace_gid}]" in result.stderr
    assert result.stderr.strip().splitlines()[-1].split(" INFO etl: ")[1].startswith("sync succeeded")


def test_metrics_file_parses_with_prometheus_client(asana_server, config, tmp_path):
    data = asana_server.dataset
    path = config(f'workspace = "{data.workspace_gid}"\nprojects = ["999"]')
    metrics = tmp_path / "metrics" / "asana_etl.prom"
    metrics.parent.mkdir()
    assert invoke("--config", path, "sync", "--metrics-file", str(metrics)).exit_code == 1
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("asana_etl_last_run_success", (("command", "sync"),))] == 0
    assert samples[("asana_etl_last_run_entries",
                    (("command", "sync"), ("outcome", "inserted")))] == len(data.entries)
    assert samples[("asana_etl_scope_success", (("command", "sync"), ("scope_gid", "999"),
                                                ("scope_type", "project")))] == 0
    assert samples[("asana_etl_scope_errors", (("command", "sync"), ("scope_gid", "999"),
                                               ("scope_type", "project")))] == 1
    assert "asana_etl_last_success_timestamp_seconds" not in families  # never fully succeeded
    assert list(metrics.parent.iterdir()) == [metrics]  # no temporary file left behind


def test_check_reports_each_scope_with_its_fix(asana_server, config):
    data = asana_server.dataset
    good, forbidden = list(data.users)[:2]
    asana_server.forbidden.add(forbidden)
    path = config(f'users = ["{good}", "{forbidden}"]\nprojects = ["424242"]')
    result = invoke("--config", path, "check")
    assert result.exit_code == 1
    out = result.stdout
    assert f"ok    user:{good}" in out
    assert f"FAIL  user:{forbidden}: HTTP 403: user: Forbidden" in out
    assert "share the project/portfolio/task with that user" in out or "cannot see" in out
    assert "FAIL  project:424242: HTTP 404: attributable_to: Unknown object: 424242" in out
    assert "check the gid" in out
    assert "1 of 3 scopes passed" in out
    assert "ok    database: no " in out  # a new database: nothing to fix, nothing made


def test_check_passes_and_says_so(asana_server, config, database_url, tmp_path):
    path = config(f'workspace = "{asana_server.dataset.workspace_gid}"')
    result = invoke("--config", path, "check")
    assert result.exit_code == 0 and "1 of 1 scope passed" in result.stdout
    assert "ok    database: no " in result.stdout
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "ops.db").exists()  # check creates nothing
    engine = engines.make_engine(database_url)
    try:
        migrate.upgrade(engine)
        result = invoke("--config", path, "check")
        assert result.exit_code == 0
        assert f"ok    database: schema at head ({migrate.HEAD_REVISION})" in result.stdout
        migrate.downgrade(engine, "0005")
        result = invoke("--config", path, "check")
        assert result.exit_code == 0
        assert "ok    database: schema at 0005, behind this version's" in result.stdout
        assert "the next sync migrates it" in result.stdout
        with engine.begin() as conn:  # as a newer asana-etl would leave it
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        result = invoke("--config", path, "check")
        assert result.exit_code == 2
        assert "FAIL  database: schema at 9999, which this version does not know" in result.stdout
        assert "fix: install the asana-etl version that made it" in result.stdout
    finally:
        engine.dispose()


@pytest.mark.parametrize("url, state, fix", [
    ("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test", "cannot connect to "
     "postgresql+psycopg://postgres:***@127.0.0.1:1/test", "is the server up"),
    ("sqlite:///{tmp}/no/such/folder/x.db", "the folder {tmp}/no/such/folder does not exist",
     "create it"),
])
def test_check_tries_the_database_and_names_the_fix(asana_server, tmp_path, url, state, fix):
    url = url.format(tmp=tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(
        f'[asana]\nbase_url = "{asana_server.base_url}"\nrequests_per_minute = 1000000\n'
        f'[database]\nurl = "{url}"\n[scopes]\n'
        f'workspace = "{asana_server.dataset.workspace_gid}"\n', encoding="utf-8")
    result = invoke("--config", str(path), "check")
    assert result.exit_code == 2, result.stdout
    assert f"FAIL  database: {state.format(tmp=tmp_path)}" in result.stdout
    assert f"fix: {fix}" in result.stdout
    assert "s3cret" not in result.stdout
    assert "1 of 1 scope passed; the database failed" in result.stdout


def test_check_with_a_refused_token_exits_3(asana_server, config):
    path = config(f'users = ["{next(iter(asana_server.dataset.users))}"]')
    result = CliRunner().invoke(cli, ["--config", path, "check"],
                                env={"ASANA_ACCESS_TOKEN": "nope"})
    assert result.exit_code == 3 and "create a new personal access token" in result.stdout


def run_with_stderr(config_path: str, on_terminal: bool) -> str:
    env = {**os.environ, "ASANA_ACCESS_TOKEN": TOKEN, "COLUMNS": "120", "TERM": "xterm"}
    command = [sys.executable, "-m", "etl", "--log-level", "error", "--config", config_path,
               "sync"]
    if not on_terminal:
        return subprocess.run(command, env=env, capture_output=True, text=True).stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    os.close(leader)
    return output.decode("utf-8", "replace")


def test_progress_on_a_terminal_and_not_when_piped(asana_server, config):
    path = config(f'workspace = "{asana_server.dataset.workspace_gid}"\n'
                  f'users = {json.dumps(list(asana_server.dataset.users)[:3])}')
    on_terminal = run_with_stderr(path, on_terminal=True)
    assert "sync: 4/4 scopes" in on_terminal and "entries" in on_terminal
    piped = run_with_stderr(path, on_terminal=False)
    assert piped == ""


def all_commands(group=cli, path=()):
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from all_commands(command, (*path, name))


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=lambda p: " ".join(p) or "group")
def test_every_command_and_option_is_documented(path):
    command = dict(all_commands())[path]
    assert command.help, f"{path} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path} {param.opts} has no help text"
    assert CliRunner().invoke(cli, [*path, "--help"]).exit_code == 0


def test_docs_exist_and_the_readme_points_to_them():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("scheduling.md", "schema.md", "troubleshooting.md"):
        assert (ROOT / "docs" / name).is_file()
        assert f"docs/{name}" in readme
    schema = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    from etl.store.schema import metadata

    for table in metadata.tables.values():
        assert f"`{table.name}`" in schema
        for column in table.columns:
            assert f"`{column.name}`" in schema, f"{table.name}.{column.name} undocumented"


def test_dry_run_reports_changes_and_leaves_the_database_byte_identical(asana_server, config,
                                                                       database_url):
    data = asana_server.dataset
    path = config(f'workspace = "{data.workspace_gid}"')
    db_file = Path(database_url.removeprefix("sqlite:///"))

    fresh = invoke("--config", path, "sync", "--dry-run")
    assert fresh.exit_code == 0
    assert f"insert {len(data.entries)}, update 0" in fresh.stdout
    assert not db_file.exists()  # not even created

    assert invoke("--config", path, "sync").exit_code == 0
    entries = list(data.entries.values())
    data.delete_entry(entries[0].gid)
    data.edit_entry(entries[1].gid, duration_minutes=entries[1].duration_minutes + 1)
    data.add_entry(entries[2].task_gid, entries[2].user_gid, 5, entries[2].entered_on)
    before = db_file.read_bytes()
    requests_before = len(asana_server.requests)

    dry = invoke("--config", path, "sync", "--dry-run")

    assert dry.exit_code == 0, dry.output
    assert "insert 1, update 1," in dry.stdout and "mark 1 deleted" in dry.stdout
    assert "nothing was written" in dry.stdout
    assert db_file.read_bytes() == before
    assert len(asana_server.requests) > requests_before  # it did read Asana
    real = invoke("--config", path, "sync")
    assert "1 inserted, 1 updated" in real.stdout and "1 deleted" in real.stdout


def test_with_json_logs_every_line_is_json_and_the_last_is_the_run_summary(
    asana_server, config, tmp_path, database_url
):
    data = asana_server.dataset
    path = config(f'workspace = "{data.workspace_gid}"\nprojects = ["999"]')
    summary_file = tmp_path / "out" / "summary.json"
    summary_file.parent.mkdir()
    result = invoke("--log-format", "json", "--config", path, "sync",
                    "--summary-file", str(summary_file))
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    err = [json.loads(line) for line in result.stderr.splitlines()]
    assert out and err and all(isinstance(x, dict) for x in out + err)
    document = out[-1]
    assert document == json.loads(summary_file.read_text())  # the same, written whole
    assert not list(summary_file.parent.glob(".*.tmp"))
    assert {"schema", "run_id", "command", "status", "exit_code", "entries_seen", "inserted",
            "updated", "unchanged", "deleted", "rejected", "scopes", "seconds", "requests",
            "retries", "rate_limited"} <= set(document)
    assert (document["command"], document["status"], document["exit_code"]) == ("sync", "partial", 1)
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        run = conn.execute(sa.select(schema.sync_runs)).one()._mapping
        scopes = {f"{r.scope_type}:{r.scope_gid}": r._mapping
                  for r in conn.execute(sa.select(schema.sync_run_scopes))}
    engine.dispose()
    for key in ("entries_seen", "inserted", "updated", "unchanged", "deleted", "rejected",
                "status"):
        assert document[key] == run[key], key
    assert document["run_id"] == run["id"]
    assert dt.datetime.fromisoformat(document["started_at"]) == run["started_at"]
    assert [s["scope"] for s in document["scopes"]] == [f"workspace:{data.workspace_gid}",
                                                        "project:999"]
    for item in document["scopes"]:
        row = scopes[item["scope"]]
        assert item["entries_seen"] == row["entries"] and item["status"] == row["status"]
        for key in ("inserted", "updated", "unchanged", "deleted", "rejected", "error",
                    "listings", "pages", "requests", "retries", "restarts"):
            assert item[key] == row[key], key
        assert item["window"] == {"since": None, "until": None}
    assert "Unknown object" in document["scopes"][1]["error"]
    assert document["requests"] >= 2 and document["rate_limited"] == 0


def test_a_run_that_cannot_start_still_leaves_its_summary(asana_server, config, tmp_path):
    path = config(f'workspace = "{asana_server.dataset.workspace_gid}"')
    summary_file = tmp_path / "summary.json"
    refused = CliRunner().invoke(cli, ["--log-format", "json", "--config", path, "backfill",
                                       "--summary-file", str(summary_file)],
                                 env={"ASANA_ACCESS_TOKEN": "wrong"}, catch_exceptions=False)
    assert refused.exit_code == 3
    lines = [json.loads(x) for x in refused.stdout.splitlines() + refused.stderr.splitlines()]
    error = next(x for x in lines if x.get("event") == "error")
    assert error["exit_code"] == 3 and "refused the token" in error["message"]
    document = json.loads(summary_file.read_text())
    assert document == json.loads(refused.stdout.splitlines()[-1])
    assert (document["command"], document["status"], document["exit_code"],
            document["run_id"]) == ("backfill", "failed", 3, None)
    assert "wrong" not in summary_file.read_text()


@pytest.mark.parametrize("args", [["status"], ["check"], ["db", "upgrade"],
                                  ["sync", "--dry-run"]])
def test_every_command_speaks_json_lines_when_asked(asana_server, config, args):
    path = config(f'workspace = "{asana_server.dataset.workspace_gid}"')
    invoke("--config", path, "sync")
    result = invoke("--log-format", "json", "--config", path, *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert lines and all(isinstance(json.loads(x), dict) for x in lines)


def test_the_readme_python_example_runs(asana_server, tmp_path, database_url):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = section[section.index("```python\n") + 10:section.index("```", section.index("```python") + 9)]
    (tmp_path / "config.toml").write_text(
        f'[asana]\nbase_url = "{asana_server.base_url}"\n[database]\nurl = "{database_url}"\n'
        f'[scopes]\nworkspace = "{asana_server.dataset.workspace_gid}"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "ASANA_ACCESS_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == ["succeeded", str(len(asana_server.dataset.entries)), "0"]


def test_a_refused_token_leaves_nothing_on_disk(asana_server, config, tmp_path):
    """Nothing is made before Asana accepts the token and the plan: no SQLite file, no
    lock folder, whatever the command."""
    path = config(f'users = ["{next(iter(asana_server.dataset.users))}"]')
    for command in (["sync"], ["backfill"], ["sync", "--dry-run"]):
        result = CliRunner().invoke(cli, ["--config", path, *command],
                                    env={"ASANA_ACCESS_TOKEN": "nope"})
        assert result.exit_code == 3, (command, result.output)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"], command
