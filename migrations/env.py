"""Alembic environment: uses the connection `etl.store.migrate` hands over, else the configured URL.

`asana-etl db upgrade` passes its own connection; a plain `alembic upgrade head` from
the repository root reads the URL the way the tool does (config file, then
`ASANA_ETL_DATABASE_URL`), unless `-x url=...` names one.
"""

from alembic import context

from etl.store import engines, migrate, schema
from etl.config import load_settings

config = context.config


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        # SQLite cannot ALTER most things: let alembic copy-and-move tables instead
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    # `alembic -x url=...` wins; otherwise the tool's own configuration
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or load_settings(require_file=False).database_url
    engine = engines.make_engine(url)
    with migrate.migration_connection(engine) as connection:  # one transaction, as in `db upgrade`
        run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
main()
