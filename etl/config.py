"""TOML file + environment → one frozen `Settings`.

Every problem in the file is collected and reported at once, each naming the file and
the key. The token never lives in the file: it comes from `ASANA_ACCESS_TOKEN` or from
the file named by `[asana] token_file` (`etl.secret`), and is wrapped in `Secret` so
that no repr, log line or exception message can show it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from etl.errors import ConfigError
from etl.secret import ENV_TOKEN, Secret, read_token

DEFAULT_CONFIG_PATH = Path("config.toml")
DEFAULT_BASE_URL = "https://app.asana.com/api/1.0"
DEFAULT_DATABASE_URL = "sqlite:///asana_time_tracking.db"

ENV_CONFIG = "ASANA_ETL_CONFIG"
ENV_DATABASE_URL = "ASANA_ETL_DATABASE_URL"

#: The longest span in days a `[sync]` key or `--recent` takes: a century.
MAX_DAYS = 36_500

ScopeKind = Literal["workspace", "user", "project", "portfolio", "task"]
#: `[scopes]` key → scope kind, in the order scopes are listed.
SCOPE_KEYS: dict[str, ScopeKind] = {
    "workspace": "workspace",
    "users": "user",
    "projects": "project",
    "portfolios": "portfolio",
    "tasks": "task",
}


@dataclass(frozen=True, order=True)
class Scope:
    """One listing of time tracking entries: a kind of filter and the gid it names."""

    kind: ScopeKind
    gid: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.gid}"


@dataclass(frozen=True)
class DateWindow:
    """Inclusive bounds on `entered_on`; None means open."""

    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ConfigError(f"--since {self.since} is after --until {self.until}")

    def __contains__(self, day: dt.date) -> bool:
        return (self.since is None or day >= self.since) and (self.until is None or day <= self.until)


@dataclass(frozen=True)
class AsanaSettings:
    base_url: str = DEFAULT_BASE_URL
    page_size: int = 100
    timeout_seconds: float = 30.0
    max_retries: int = 5
    max_rate_limit_waits: int = 20
    backoff_max_seconds: float = 60.0
    requests_per_minute: int = 1500
    concurrency: int = 16
    token: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SyncSettings:
    """`[sync]`: how much of each scope a `sync` reads.

    `recent_days` 0 reads every scope in full; N reads only the entries entered in the
    last N days (today included, UTC), except that a scope whose last complete full read
    is `full_every_days` or more days old is read in full.
    """

    recent_days: int = 0
    full_every_days: int = 7


@dataclass(frozen=True)
class DetailsSettings:
    """`[details]`: what a run reads beyond the list (off by default: it costs requests).

    `entries` reads each entry's task, billable and approval status, description and
    `created_at`, one request an entry unless the list gives them; `max_requests` caps
    those requests in one run (0: no cap), the rest waiting for the next run;
    `refresh_days` is how far back the details that can still change (of a week not
    approved) are read again on every run. `categories`, `timesheets` and `rates` read
    the entries' categories (and the workspace's), the weekly timesheet approvals of the
    users whose entries are stored, and the hourly rates of their projects; categories
    and timesheets live in `workspace`.
    """

    entries: bool = False
    max_requests: int = 20_000
    refresh_days: int = 35
    categories: bool = False
    timesheets: bool = False
    rates: bool = False
    workspace: str | None = None


@dataclass(frozen=True)
class Settings:
    asana: AsanaSettings = field(default_factory=AsanaSettings)
    database_url: str = DEFAULT_DATABASE_URL
    sync: SyncSettings = field(default_factory=SyncSettings)
    details: DetailsSettings = field(default_factory=DetailsSettings)
    scopes: tuple[Scope, ...] = ()
    source: str = "(defaults)"

    def require_token(self) -> Secret:
        """The token, or a ConfigError saying where to put it."""
        if self.asana.token is None:
            raise ConfigError(
                f"no Asana token: set {ENV_TOKEN} or [asana] token_file in {self.source}"
            )
        return self.asana.token


# key → (accepted types, type name for messages)
_ASANA_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "base_url": ((str,), "a string"),
    "page_size": ((int,), "an integer"),
    "timeout_seconds": ((int, float), "a number"),
    "max_retries": ((int,), "an integer"),
    "max_rate_limit_waits": ((int,), "an integer"),
    "backoff_max_seconds": ((int, float), "a number"),
    "requests_per_minute": ((int,), "an integer"),
    "concurrency": ((int,), "an integer"),
    "token_file": ((str,), "a string"),
}
_DATABASE_KEYS = {"url": ((str,), "a string")}
_SYNC_KEYS = {
    "recent_days": ((int,), "an integer"),
    "full_every_days": ((int,), "an integer"),
}
_DETAILS_KEYS = {
    "entries": ((bool,), "true or false"),
    "max_requests": ((int,), "an integer"),
    "refresh_days": ((int,), "an integer"),
    "categories": ((bool,), "true or false"),
    "timesheets": ((bool,), "true or false"),
    "rates": ((bool,), "true or false"),
    "workspace": ((str,), "a gid string"),
}
#: The sections of the file, in the order they are documented.
_SECTIONS = ("asana", "database", "sync", "details", "scopes")


def config_path(option: str | Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Where the config file is, and whether the user named it explicitly."""
    if option:
        return Path(option), True
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_file: bool = True,
) -> Settings:
    """Read and validate the configuration.

    Args:
        path: the `--config` option, if given.
        env: the environment (defaults to `os.environ`).
        require_file: when False, a missing *default* config file means "all defaults"
            (for `db upgrade`, `status`); a file named explicitly must always exist.

    Raises:
        ConfigError: listing every problem found, each naming the file and the key.
    """
    env = os.environ if env is None else env
    file, explicit = config_path(path, env)
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc.__class__.__name__}") from None
    elif explicit or require_file:
        raise ConfigError(
            f"{file}: config file not found (copy config.example.toml, or name one with "
            f"--config or {ENV_CONFIG})"
        )
    else:
        data = {}
    return _settings_from(data, str(file), env)


def _settings_from(data: dict[str, Any], source: str, env: Mapping[str, str]) -> Settings:
    problems: list[str] = []

    def problem(key: str, msg: str) -> None:
        problems.append(f"{source}: {key}: {msg}")

    for section in data:
        if section not in _SECTIONS:
            problem(f"[{section}]", "unknown section (expected "
                    + ", ".join(f"[{s}]" for s in _SECTIONS) + ")")
    sections: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        value = data.get(section, {})
        if not isinstance(value, dict):
            problem(section, "must be a table ([" + section + "])")
            value = {}
        sections[section] = value

    asana = _typed_section(sections["asana"], "asana", _ASANA_KEYS, problem, secret_key="token")
    database = _typed_section(sections["database"], "database", _DATABASE_KEYS, problem)
    sync = _typed_section(sections["sync"], "sync", _SYNC_KEYS, problem)
    details = _typed_section(sections["details"], "details", _DETAILS_KEYS, problem)
    scopes = _scopes(sections["scopes"], problem)

    defaults = AsanaSettings()
    base_url = str(asana.get("base_url", defaults.base_url)).rstrip("/")
    url_problem = base_url_problem(base_url)
    if url_problem:
        problem("[asana] base_url", url_problem)
    _check_range(asana, "page_size", 1, 100, problem)
    _check_range(asana, "max_retries", 0, 100, problem)
    _check_range(asana, "max_rate_limit_waits", 0, 1000, problem)
    _check_range(asana, "requests_per_minute", 1, 10_000_000, problem)
    _check_range(asana, "concurrency", 1, 50, problem)
    _check_range(sync, "recent_days", 0, MAX_DAYS, problem, section="sync")
    _check_range(sync, "full_every_days", 0, MAX_DAYS, problem, section="sync")
    _check_range(details, "max_requests", 0, 100_000_000, problem, section="details")
    _check_range(details, "refresh_days", 0, MAX_DAYS, problem, section="details")
    details_workspace(details, scopes, problem)
    for key in ("timeout_seconds", "backoff_max_seconds"):
        if key in asana and not asana[key] > 0:
            problem(f"[asana] {key}", f"must be greater than 0 (got {asana[key]!r})")

    token = read_token(asana.get("token_file"), env, problem)
    if problems:
        raise ConfigError("\n".join(problems))

    asana_settings = AsanaSettings(
        base_url=base_url,
        page_size=asana.get("page_size", defaults.page_size),
        timeout_seconds=float(asana.get("timeout_seconds", defaults.timeout_seconds)),
        max_retries=asana.get("max_retries", defaults.max_retries),
        max_rate_limit_waits=asana.get("max_rate_limit_waits", defaults.max_rate_limit_waits),
        backoff_max_seconds=float(asana.get("backoff_max_seconds", defaults.backoff_max_seconds)),
        requests_per_minute=asana.get("requests_per_minute", defaults.requests_per_minute),
        concurrency=asana.get("concurrency", defaults.concurrency),
        token=token,
    )
    database_url = env.get(ENV_DATABASE_URL) or database.get("url") or DEFAULT_DATABASE_URL
    return Settings(asana=asana_settings, database_url=database_url, sync=SyncSettings(**sync),
                    details=DetailsSettings(**details),
                    scopes=scopes, source=source)


def details_workspace(details: dict[str, Any], scopes: tuple[Scope, ...], problem) -> None:
    """`[details] workspace`: a gid; else `[scopes] workspace`, which categories and
    timesheets need one of (they live in a workspace)."""
    gid = details.get("workspace")
    if gid is not None and (not gid.isascii() or not gid.isdigit()):
        problem("[details] workspace", f"must be a gid, a string of digits (got {gid!r})")
        return
    if gid is None:
        gid = next((s.gid for s in scopes if s.kind == "workspace"), None)
        if gid is not None:
            details["workspace"] = gid
    wanted = [key for key in ("categories", "timesheets") if details.get(key)]
    if wanted and gid is None:
        problem("[details] workspace", f"{' and '.join(wanted)} live in a workspace: set "
                "[details] workspace, or [scopes] workspace, to its gid")


def _typed_section(section, name, known, problem, secret_key=None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key == secret_key:
            problem(
                f"[{name}] {key}",
                f"the token must not be stored in the config file: set {ENV_TOKEN} "
                "or [asana] token_file instead",
            )
        elif key not in known:
            problem(f"[{name}] {key}", f"unknown key (known: {', '.join(sorted(known))})")
        else:
            types, type_name = known[key]
            # bool is an int in Python; `page_size = true` is still a mistake
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                problem(f"[{name}] {key}", f"must be {type_name} (got {_toml_type(value)})")
            else:
                values[key] = value
    return values


def _scopes(section: dict[str, Any], problem) -> tuple[Scope, ...]:
    scopes: list[Scope] = []
    for key, value in section.items():
        if key not in SCOPE_KEYS:
            problem(f"[scopes] {key}", f"unknown key (known: {', '.join(SCOPE_KEYS)})")
            continue
        kind = SCOPE_KEYS[key]
        if key == "workspace":
            if not isinstance(value, str):
                problem(f"[scopes] {key}", f"must be a gid string (got {_toml_type(value)})")
                continue
            values = [value]
        elif not isinstance(value, list):
            problem(f"[scopes] {key}", f"must be a list of gid strings (got {_toml_type(value)})")
            continue
        else:
            values = value
        for i, gid in enumerate(values):
            where = f"[scopes] {key}" + ("" if key == "workspace" else f"[{i}]")
            if not isinstance(gid, str):
                problem(where, f"must be a gid string of digits (got {_toml_type(gid)})")
            elif not gid.isascii() or not gid.isdigit():
                problem(where, f"must be a gid, a string of digits (got {gid!r})")
            else:
                scope = Scope(kind, gid)
                if scope not in scopes:
                    scopes.append(scope)
    return tuple(scopes)


def _check_range(values: dict[str, Any], key: str, low: int, high: int, problem,
                 section: str = "asana") -> None:
    if key in values and not low <= values[key] <= high:
        problem(f"[{section}] {key}", f"must be between {low} and {high} (got {values[key]!r})")


def base_url_problem(url: str) -> str | None:
    """Why this Asana base URL is refused, or None when it is fine.

    Plain http would send the token in clear text, so it is only allowed to loopback
    (the simulator, a local proxy).
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return None
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return None
        except ValueError:
            pass
        return f"plain http:// is only allowed to a loopback host (got {url!r}); use https://"
    return f"must be an https:// URL (got {url!r})"


def _toml_type(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
