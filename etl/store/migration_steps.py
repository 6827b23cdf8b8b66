"""Migration steps that look before they act, so that a half-applied migration can be
run again and completes.

MySQL/MariaDB commit every DDL statement on its own: a migration killed between two of
its statements keeps the first and is not recorded, and running it again failed on
what was already there ("Table already exists", "Duplicate column name"). Each step
here does nothing when its effect is present already (and so completes, too, a SQLite
file that an older version left half-migrated). PostgreSQL and SQLite run an upgrade in
one transaction (etl.store.migrate.migration_connection), where every check finds the state the
step expects: the schema they make is the one the plain operations made.

The migrations in migrations/versions use these; an old migration must keep doing what
it did, so a step's behaviour may never change (add new ones instead).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

#: Where SQLite's batch mode copies a table before it renames the copy into place.
BATCH_COPY_PREFIX = "_alembic_tmp_"


def _inspector() -> sa.Inspector:
    """A fresh inspector: a cached one would miss what the previous step did."""
    return sa.inspect(op.get_bind())


def has_table(name: str) -> bool:
    return _inspector().has_table(name)


def has_column(table: str, column: str) -> bool:
    return column in {c["name"] for c in _inspector().get_columns(table)}


def has_index(table: str, name: str) -> bool:
    return name in {i["name"] for i in _inspector().get_indexes(table)}


def has_view(name: str) -> bool:
    return name in _inspector().get_view_names()


def has_foreign_key(table: str, name: str) -> bool:
    return name in {fk["name"] for fk in _inspector().get_foreign_keys(table)}


@contextlib.contextmanager
def batch_alter_table(table: str) -> Iterator[BatchOperations]:
    """`op.batch_alter_table`, first dropping the copy that a killed batch left behind.

    On SQLite a batch copies the table to `_alembic_tmp_<table>` and renames the copy
    into place. Before upgrades ran in one transaction, a kill could leave the copy
    committed on its own (its CREATE came before the transaction began), and every
    later batch of the table failed creating it. The table itself was intact: its DROP
    and the copy's RENAME came later, inside the transaction that the kill undid.
    """
    drop_table_if_present(BATCH_COPY_PREFIX + table)
    with op.batch_alter_table(table) as batch:
        yield batch


def create_table_if_missing(name: str, *elements: Any, **options: Any) -> None:
    """`op.create_table`, unless the table exists (MySQL creates a table, with its
    keys, in one statement: one that exists is whole)."""
    if not has_table(name):
        op.create_table(name, *elements, **options)


def drop_table_if_present(name: str) -> None:
    if has_table(name):
        op.drop_table(name)


def create_index_if_missing(name: str, table: str, columns: list[str]) -> None:
    if not has_index(table, name):
        op.create_index(name, table, columns)


def add_column_if_missing(table: str, column: sa.Column) -> None:
    """`op.add_column` (a plain ADD COLUMN), unless the column exists."""
    if not has_column(table, column.name):
        op.add_column(table, column)


def add_columns_if_missing(table: str, *columns: sa.Column) -> None:
    """The columns that do not exist yet, added in one batch (on MySQL still one
    statement each: a kill between them leaves some)."""
    missing = [column for column in columns if not has_column(table, column.name)]
    if missing:
        with batch_alter_table(table) as batch:
            for column in missing:
                batch.add_column(column)


def drop_foreign_key_if_present(table: str, name: str) -> None:
    if has_foreign_key(table, name):
        with batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")


def create_view_if_missing(name: str, select: str) -> None:
    """CREATE VIEW, unless it exists (PostgreSQL has no CREATE VIEW IF NOT EXISTS, and
    CREATE OR REPLACE would hide a view that is not the one expected)."""
    if not has_view(name):
        op.execute(f"CREATE VIEW {name} AS {select}")


def mysql_retype_text_columns(table: str,
                              columns: Mapping[str, tuple[sa.types.TypeEngine[Any], bool]],
                              charset: str, collation: str) -> None:
    """MySQL: give each of `columns` (name → type, nullable) its text type, in one
    ALTER TABLE (one copy of the table, not one per column), skipping the columns that
    have it already. One statement: a kill leaves all of them changed or none."""
    bind = op.get_bind()
    current = {c["name"]: c["type"] for c in _inspector().get_columns(table)}
    changes = [
        f"MODIFY {name} {type_.compile(dialect=bind.dialect)} CHARACTER SET {charset} "
        f"COLLATE {collation} {'NULL' if nullable else 'NOT NULL'}"
        for name, (type_, nullable) in columns.items()
        if type(current[name]) is not type(type_)
    ]
    if changes:
        op.execute(f"ALTER TABLE {table} " + ", ".join(changes))


def view_columns(name: str) -> set[str]:
    return {c["name"] for c in _inspector().get_columns(name)}


def replace_view(name: str, select: str, having: str) -> None:
    """Make view `name` the one `select` defines, where the one there lacks the column
    `having` (an older definition): dropped, then created. Run again after a kill between
    the two (MySQL commits each), it creates what is missing; after both, it does nothing."""
    if has_view(name) and having not in view_columns(name):
        op.execute(f"DROP VIEW {name}")
    create_view_if_missing(name, select)
