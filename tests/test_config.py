"""Config: TOML + environment, every problem named with its key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.config import DEFAULT_DATABASE_URL, Scope, SyncSettings, base_url_problem, load_settings
from etl.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_is_valid_and_documents_the_defaults():
    settings = load_settings(ROOT / "config.example.toml", env={})
    assert settings.asana.page_size == 100
    assert settings.asana.requests_per_minute == 1500
    assert settings.asana.base_url == "https://app.asana.com/api/1.0"
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.asana.token is None


def test_every_documented_key_is_known(tmp_path):
    # the example config comments out optional keys: uncommented, they must all parse
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    lines = [ln[2:] if ln.startswith("# ") and " = " in ln and not ln.startswith("# token") else ln
             for ln in text.splitlines()]
    settings = load_settings(write(tmp_path, "\n".join(lines)), env={})
    assert settings.scopes  # the example scopes parse


def test_scopes_in_order_without_duplicates(tmp_path):
    path = write(tmp_path, """
[scopes]
workspace = "1"
users = ["2", "3", "2"]
projects = ["4"]
portfolios = ["5"]
tasks = ["6"]
""")
    settings = load_settings(path, env={})
    assert settings.scopes == (
        Scope("workspace", "1"), Scope("user", "2"), Scope("user", "3"),
        Scope("project", "4"), Scope("portfolio", "5"), Scope("task", "6"),
    )


def test_environment_wins_over_the_file(tmp_path):
    path = write(tmp_path, '[database]\nurl = "sqlite:///from-file.db"\n')
    settings = load_settings(path, env={"ASANA_ETL_DATABASE_URL": "sqlite:///env.db",
                                        "ASANA_ACCESS_TOKEN": "tok-123"})
    assert settings.database_url == "sqlite:///env.db"
    assert settings.asana.token.reveal() == "tok-123"
    assert "tok-123" not in repr(settings)


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, "[asana]\npage_size = 10\n")
    assert load_settings(env={"ASANA_ETL_CONFIG": str(path)}).asana.page_size == 10


def test_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("secret-from-file\n")
    path = write(tmp_path, f'[asana]\ntoken_file = "{token}"\n')
    assert load_settings(path, env={}).require_token().reveal() == "secret-from-file"


def test_missing_token_names_both_ways_to_give_one(tmp_path):
    settings = load_settings(write(tmp_path, ""), env={})
    with pytest.raises(ConfigError, match="ASANA_ACCESS_TOKEN.*token_file"):
        settings.require_token()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[asana]\npage_sise = 10\n", r"\[asana\] page_sise: unknown key"),
        ("[asana]\npage_size = '10'\n", r"\[asana\] page_size: must be an integer \(got a string\)"),
        ("[asana]\npage_size = true\n", r"page_size: must be an integer \(got a boolean\)"),
        ("[asana]\npage_size = 500\n", r"page_size: must be between 1 and 100 \(got 500\)"),
        ("[asana]\npage_size = 0\n", r"page_size: must be between 1 and 100"),
        ("[asana]\ntoken = 'abc'\n", r"\[asana\] token: the token must not be stored"),
        ("[asana]\nbase_url = 'http://asana.example.com/api/1.0'\n", r"only allowed to a loopback"),
        ("[scopes]\nusers = ['12a']\n", r"\[scopes\] users\[0\]: must be a gid"),
        ("[scopes]\nusers = [12]\n", r"users\[0\]: must be a gid string of digits \(got an integer\)"),
        ("[scopes]\nworkspace = 12\n", r"\[scopes\] workspace: must be a gid string"),
        ("[scopes]\nteams = ['1']\n", r"\[scopes\] teams: unknown key"),
        ("[sources]\n", r"\[sources\]: unknown section"),
        ("[asana\npage_size = 1\n", r"not valid TOML.*line 1, column"),
    ],
)
def test_config_errors_name_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "[asana]\npage_size = 0\nbogus = 1\n[scopes]\nusers = ['x']\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert len(str(info.value).splitlines()) == 3


def test_literal_token_is_refused_without_echoing_it(tmp_path):
    path = write(tmp_path, "[asana]\ntoken = '0/super-secret-value'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert "super-secret-value" not in str(info.value)


def test_a_named_file_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_the_default_file_may_be_missing_where_allowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}, require_file=False).database_url == DEFAULT_DATABASE_URL
    with pytest.raises(ConfigError):
        load_settings(env={})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://app.asana.com/api/1.0", True),
        ("http://127.0.0.1:8080/api/1.0", True),
        ("http://localhost/api/1.0", True),
        ("http://[::1]:80/api", True),
        ("http://10.0.0.5/api/1.0", False),
        ("ftp://app.asana.com", False),
        ("app.asana.com", False),
    ],
)
def test_plain_http_only_to_loopback(url, ok):
    assert (base_url_problem(url) is None) is ok


def test_the_sync_section(tmp_path):
    assert load_settings(write(tmp_path, ""), env={}).sync == SyncSettings(0, 7)
    path = write(tmp_path, "[sync]\nrecent_days = 30\nfull_every_days = 14\n")
    assert load_settings(path, env={}).sync == SyncSettings(recent_days=30, full_every_days=14)
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, '[sync]\nrecent_days = -1\nfull_every_days = "7"\n'
                                      "recent = 3\n"), env={})
    lines = str(error.value).splitlines()
    assert any("[sync] recent_days: must be between 0 and 36500" in x for x in lines)
    assert any("[sync] full_every_days: must be an integer (got a string)" in x for x in lines)
    assert any("[sync] recent: unknown key" in x for x in lines)


SECRET_PART = "0/secret-token-part"


@pytest.mark.parametrize(
    ("inside", "message"),
    [
        ("\n", "holds a line break inside it"),
        ("\r", "holds a line break inside it"),
        (" ", "holds whitespace inside it"),
        ("\t", "holds whitespace inside it"),
        ("\u00a0", "holds whitespace inside it"),
        ("é", "holds a character that is not ASCII"),
        ("\x00", "holds a control character"),
    ],
)
def test_a_token_that_cannot_be_sent_is_refused_without_echoing_it(tmp_path, inside, message):
    token = f"{SECRET_PART}{inside}tail-42"
    with pytest.raises(ConfigError, match="ASANA_ACCESS_TOKEN: the token in the environment "
                                          f"variable {message}") as info:
        load_settings(write(tmp_path, ""), env={"ASANA_ACCESS_TOKEN": f" {token}\n"})
    assert SECRET_PART not in str(info.value) and "tail-42" not in str(info.value)
    file = tmp_path / "token"
    file.write_text(token + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"\[asana\] token_file: the token in {file} "
                                          f"{message}") as info:
        load_settings(write(tmp_path, f'[asana]\ntoken_file = "{file}"\n'), env={})
    assert SECRET_PART not in str(info.value)


def test_the_ends_of_a_token_are_stripped(tmp_path):
    file = tmp_path / "token"
    file.write_text(f"  {SECRET_PART}\r\n\n", encoding="utf-8")
    path = write(tmp_path, f'[asana]\ntoken_file = "{file}"\n')
    assert load_settings(path, env={}).require_token().reveal() == SECRET_PART
    settings = load_settings(path, env={"ASANA_ACCESS_TOKEN": f"\t{SECRET_PART}\n"})
    assert settings.require_token().reveal() == SECRET_PART


@pytest.mark.parametrize("value", ["\n", "  \t "])
def test_a_blank_token_is_refused(tmp_path, value):
    file = tmp_path / "token"
    file.write_text(value, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"token_file: the token in {file} is empty"):
        load_settings(write(tmp_path, f'[asana]\ntoken_file = "{file}"\n'), env={})
    with pytest.raises(ConfigError, match="ASANA_ACCESS_TOKEN: the token in the environment "
                                          "variable is empty"):
        load_settings(write(tmp_path, ""), env={"ASANA_ACCESS_TOKEN": value})


@pytest.mark.parametrize("source", ["env", "token_file"])
def test_the_command_line_exits_2_on_a_token_with_a_line_break(tmp_path, asana_server, source):
    """It was sent, refused by requests as a header, and retried as if Asana had failed."""
    token = f"{SECRET_PART}\nsecond-line"
    extra, env = "", {"ASANA_ACCESS_TOKEN": token}
    if source == "token_file":
        file = tmp_path / "token"
        file.write_text(token + "\n", encoding="utf-8")
        extra, env = f'token_file = "{file}"\n', {"ASANA_ACCESS_TOKEN": ""}
    path = write(tmp_path, f'[asana]\nbase_url = "{asana_server.base_url}"\n{extra}'
                           f'[database]\nurl = "sqlite:///{tmp_path / "t.db"}"\n'
                           f'[scopes]\nworkspace = "{asana_server.dataset.workspace_gid}"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "sync"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert "holds a line break inside it" in result.stderr
    assert ("ASANA_ACCESS_TOKEN" if source == "env" else str(tmp_path / "token")) in result.stderr
    assert SECRET_PART not in result.output and "second-line" not in result.output
    assert asana_server.requests == [] and not (tmp_path / "t.db").exists()


def test_details_keys_and_the_workspace_categories_and_timesheets_need(tmp_path):
    details = load_settings(write(tmp_path, '[details]\nentries = true\nmax_requests = 0\n'
                                  'refresh_days = 14\nrates = true\n'
                                  '[scopes]\nusers = ["12"]\n'), env={}).details
    assert (details.entries, details.max_requests, details.refresh_days, details.rates) == (
        True, 0, 14, True)
    with pytest.raises(ConfigError, match=r"config.toml: \[details\] workspace: categories and "
                       r"timesheets live in a workspace: set \[details\] workspace, or "
                       r"\[scopes\] workspace, to its gid"):
        load_settings(write(tmp_path, '[details]\ncategories = true\ntimesheets = true\n'
                            '[scopes]\nusers = ["12"]\n'), env={})
    taken = load_settings(write(tmp_path, '[details]\ntimesheets = true\n'
                                '[scopes]\nworkspace = "11"\n'), env={}).details
    assert taken.workspace == "11"
    with pytest.raises(ConfigError, match=r"\[details\] entries: must be true or false"):
        load_settings(write(tmp_path, '[details]\nentries = 1\n'), env={})
