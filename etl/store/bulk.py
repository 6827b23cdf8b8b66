"""The fastest ways each backend has to write many rows and to look many gids up:
COPY on PostgreSQL, the driver's executemany elsewhere; one parameter a chunk of gids
(`json_each` on SQLite, `= ANY` on PostgreSQL), `IN (...)` in chunks on MySQL.

The loader's hot path goes through here: rows reach the driver as tuples, in SQL text
compiled once.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from etl.store.schema import UTCDateTime

#: Gids per `IN (...)` list: well under every backend's limit on bound parameters.
IN_CHUNK = 1000


def bulk_insert(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]],
    *, processed: bool = False,
) -> None:
    """A plain INSERT of many rows by the backend's fastest way: COPY on PostgreSQL,
    the driver's executemany elsewhere (values go through the columns' bind processors,
    as SQLAlchemy would send them, unless they are `processed` already: see
    `driver_value`)."""
    dialect = conn.dialect
    processors = [] if processed else [processor(table.c[c], dialect) for c in columns]
    if any(processors):
        rows = [tuple(p(v) if p else v for p, v in zip(processors, row)) for row in rows]
    if dialect.name == "postgresql":
        copy_rows(conn, table.name, columns, rows)
        return
    conn.exec_driver_sql(_insert_sql(table.name, columns, dialect), rows)


def _insert_sql(table: str, columns: Sequence[str], dialect: sa.Dialect) -> str:
    placeholders = ", ".join([placeholder(dialect)] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"


def insert_unless_duplicate(conn: sa.Connection, table: str, columns: Sequence[str],
                            rows: list[tuple[Any, ...]]) -> bool:
    """These rows (in the driver's form) into `table`, or, if one is there already,
    nothing (the transaction goes on); False then. COPY on PostgreSQL. Not for SQLite,
    whose driver opens no transaction before a SAVEPOINT: releasing it would commit."""
    if conn.dialect.name == "postgresql":
        return copy_unless_duplicate(conn, table, columns, rows)
    savepoint = conn.begin_nested()
    try:
        conn.exec_driver_sql(_insert_sql(table, columns, conn.dialect), rows)
    except sa.exc.IntegrityError:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def driver_value(column: sa.Column[Any], dialect: sa.Dialect, value: Any) -> Any:
    """`value` as the column's bind processor sends it to the driver (for `processed`
    rows: a batch's one timestamp, formatted once rather than for every row)."""
    process = processor(column, dialect)
    return value if process is None else process(value)


def copy_unless_duplicate(conn: sa.Connection, table: str, columns: Sequence[str],
                           rows: list[tuple[Any, ...]]) -> bool:
    """PostgreSQL: COPY these rows into `table`, or, if one is there already, nothing
    (the transaction goes on); False then."""
    savepoint = conn.begin_nested()
    try:
        copy_rows(conn, table, columns, rows)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != "23505":  # unique_violation
            raise
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def copy_stamp(now: dt.datetime) -> str:
    """A UTC timestamp as COPY text: formatted once a batch (psycopg formatting a
    datetime for every row was half the time spent formatting rows)."""
    return now.astimezone(dt.UTC).isoformat()


def copy_rows(conn: sa.Connection, table: str, columns: Sequence[str],
          rows: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: COPY these rows into `table`."""
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def processor(column: sa.Column[Any], dialect: sa.Dialect) -> Any:
    """The column's bind processor; for timestamps memoised, as a batch carries one `now`
    (formatting it anew for every row was a tenth of the loader's time)."""
    process = column.type._cached_bind_processor(dialect)
    if process is None or not isinstance(column.type, UTCDateTime):
        return process
    return functools.lru_cache(maxsize=8)(process)


def select_among(
    conn: sa.Connection, query: str, values: list[str], *params: Any
) -> Iterator[tuple[Any, ...]]:
    """Rows of `query` (SQL text ending in a column, `{p}` for each of `params`) where
    that column is one of `values`: one parameter a chunk on SQLite (`json_each`) and
    PostgreSQL (`= ANY`), so nothing is re-rendered or re-parsed per value; `IN (...)`
    in chunks on MySQL."""
    dialect = conn.dialect.name
    mark = placeholder(conn.dialect)
    head = query.format(p=mark)
    if dialect == "sqlite":
        sql, size = f"{head} IN (SELECT value FROM json_each(?))", 50_000
        pack: Any = lambda chunk: orjson.dumps(chunk).decode()  # noqa: E731
    elif dialect == "postgresql":
        sql, size, pack = f"{head} = ANY(%s::varchar[])", 50_000, pg_array
        # by index, always: costed for disk reads, 5,000 probes look dearer than a scan
        # of the whole table until it holds millions of rows, so each batch of a large
        # load scanned it (quadratic; a sixth of the server's time at 200k entries)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    else:
        sql, size, pack = None, IN_CHUNK, None
    for chunk in chunks(values, size):
        if sql is None:
            text = f"{head} IN ({', '.join([mark] * len(chunk))})"
            yield from conn.exec_driver_sql(text, (*params, *chunk))
        else:
            yield from conn.exec_driver_sql(sql, (*params, pack(chunk)))


def pg_array(values: list[str]) -> str | list[str]:
    """gids as one array literal, `{1,2,3}`: joined in C, where psycopg adapts a list item
    by item (a tenth of the loader's own time). Only strings of digits need no quoting."""
    if values and all(map(str.isdigit, values)):
        return "{" + ",".join(values) + "}"
    return values


def placeholder(dialect: sa.Dialect) -> str:
    """The driver's positional placeholder."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
