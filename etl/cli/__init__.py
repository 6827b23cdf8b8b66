"""The `asana-etl` command line: thin commands over the library (`etl.run`, `etl.store`,
`etl.asana`). This package is the only one that configures logging and turns errors
into exit codes.

`app` holds the command group; each command is a module of its own (importing them
here registers them): `sync` (sync and backfill), `status`, `check`, `database` (db
upgrade), `demo`. `logs`, `console` and `progress` are what a person sees on the
terminal; `summary` and `metrics` what a machine reads.
"""

from etl.cli.app import cli, main
from etl.cli import check, database, demo, status, sync  # noqa: F401  (they register their commands)

__all__ = ["cli", "main"]
