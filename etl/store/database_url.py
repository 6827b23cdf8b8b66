"""What a database URL that cannot be used should have been: the corrected form for the
mistakes people make (`postgres://`, `mysql://` without its driver, `sqllite://`,
`sqlite://x.db`, a bare file name), so that the error can name it.

Everything here works on the text, never on a connection, and every URL it returns for
printing has its password masked.
"""

from __future__ import annotations

import difflib

#: The URL schemes this tool is installed for, by what people write instead.
_POSTGRES = ("postgres", "postgresql", "postgresql+psycopg2", "pgsql", "psql")
_MYSQL = ("mysql", "mariadb", "mysql+mysqldb", "mariadb+pymysql", "mariadb+mysqldb",
          "mysql+mysqlconnector")


def corrected(url: str) -> str | None:
    """The URL as this tool takes it, when `url` is one of the usual mistakes (None when
    there is nothing obvious to suggest)."""
    if "://" not in url:
        if "@" in url or ":" in url.split("/", 1)[0]:
            return None  # not a path, and not a URL either
        return "sqlite:///" + url  # a bare path: sqlite:////var/x.db when absolute
    scheme, rest = url.split("://", 1)
    lowered = scheme.lower()
    if lowered in _POSTGRES:
        return "postgresql+psycopg://" + rest
    if lowered in _MYSQL:
        return "mysql+pymysql://" + rest
    if lowered == "sqlite":
        return None if rest.startswith("/") else "sqlite:///" + rest  # sqlite://x.db
    if lowered.startswith("sql") or difflib.SequenceMatcher(None, lowered, "sqlite").ratio() > 0.7:
        return "sqlite://" + rest  # sqllite:///x.db, sqlite3:///x.db
    return None


#: Query parameters that hold a secret (`?password=…` is another way to give one).
_SECRET_PARAMETERS = ("password", "sslpassword", "passwd")


def masked(url: str) -> str:
    """`url` with its password replaced by `***` (also when it does not parse, when the
    password holds an unescaped `@`, or when it comes as a query parameter)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        if "@" not in (parsed.host or ""):  # else the password's tail would show as host
            secrets = {key: "***" for key in parsed.query if key.lower() in _SECRET_PARAMETERS}
            return parsed.update_query_dict(secrets).render_as_string(hide_password=True)
    except Exception:
        pass
    if "://" not in url:
        return ("***@" + url.rsplit("@", 1)[1]) if "@" in url else url
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{rest}"
    return url


def secrets(url: str) -> list[str]:
    """The password as written in `url` (and its parts around an unescaped `@`), for
    scrubbing from a driver's own messages."""
    rest = url.split("://", 1)[1] if "://" in url else url
    found = []
    if "@" in rest.split("?", 1)[0]:
        credentials = rest.rsplit("@", 1)[0]
        if ":" in credentials:
            password = credentials.split(":", 1)[1]
            found += [password, *password.split("@")]
    for part in rest.split("?", 1)[1].split("&") if "?" in rest else []:
        key, _, value = part.partition("=")
        if key.lower() in _SECRET_PARAMETERS and value:
            found.append(value)
    return sorted({p for p in found if len(p) >= 3}, key=len, reverse=True)
