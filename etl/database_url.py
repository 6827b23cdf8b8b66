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


def masked(url: str) -> str:
    """`url` with its password replaced by `***` (also when it does not parse)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
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
