"""The `asana-etl` command group: options, logging, and the one place where the tool's
errors become the CONTRACT's exit codes (a one-line message, or one JSON object with
`--log-format json`). Each command lives in a module of its own beside this one, a thin
layer over a function of the library.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from typing import Any

import click

from etl import __version__
from etl.cli import pipes, summary
from etl.cli.logs import setup_logging
from etl.config import ENV_CONFIG, Settings, load_settings
from etl.errors import DatabaseError, EtlError, Interrupted
from etl.run.pipeline import request_stop

log = logging.getLogger("etl")


class _EtlGroup(click.Group):
    """Maps the tool's errors to the CONTRACT's exit codes with a one-line message (one
    JSON object with `--log-format json`), and gives a run that ends so its summary."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            _fail(ctx, exc, int(exc.exit_code), str(exc).splitlines())
        except Interrupted as exc:
            _fail(ctx, exc, exc.exit_code, [f"{exc}: stopped between two batches, nothing "
                                           "half-written; a run in progress is recorded as failed"])


def _fail(ctx: click.Context, exc: BaseException, code: int, lines: list[str]) -> None:
    obj = ctx.obj or {}
    if isinstance(exc, DatabaseError):  # its cause, for a bug report: at debug only
        log.debug("what the database driver said", exc_info=exc)
    if obj.get("log_format") == "json":
        log.error("%s", "; ".join(lines), extra={"event": "error", "fields": {"exit_code": code}})
    else:
        for line in lines:
            click.echo(f"error: {line}", err=True)
    command = obj.get("run_command")
    if command is not None:  # a run's command: its summary is due all the same
        document = summary.of_error(command, exc, code)
        if obj.get("summary_file"):
            summary.write_file(obj["summary_file"], document)
        pipes.report(document)  # to the Dagster asset that launched it, if one did
        if obj.get("log_format") == "json":
            click.echo(summary.dumps(document))
        elif getattr(exc, "result", None) is not None:  # it had started: what it did
            click.echo(exc.result.summary())
    ctx.exit(code)


@click.group(cls=_EtlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help=f"TOML config file [default: ${ENV_CONFIG}, else ./config.toml].",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    envvar="ASANA_ETL_LOG_LEVEL",
    help="Log verbosity on stderr (env ASANA_ETL_LOG_LEVEL).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object a line.",
)
@click.version_option(__version__, prog_name="asana-etl")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Keep a SQL database in sync with Asana's time tracking entries."""
    terminal = setup_logging(log_level, log_format)
    ctx.obj = {"config_path": config_path, "log_format": log_format, "terminal": terminal}


def settings_of(ctx: click.Context, *, require_file: bool = True) -> Settings:
    """The configuration the command group's options point at."""
    return load_settings(ctx.obj["config_path"], require_file=require_file)


def json_output(ctx: click.Context) -> bool:
    """Whether the command speaks JSON (`--log-format json`)."""
    return ctx.obj.get("log_format") == "json"


def _interrupt(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    # a loading run stops at its next safe point; anything else stops here and now
    if not request_stop(name, signum):
        raise Interrupted(name, signum)


def main() -> None:
    # SIGTERM (systemd, Kubernetes, kill) and SIGINT (Ctrl-C) stop the run gracefully:
    # the exception unwinds through the open transaction, which rolls back
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        cli(prog_name="asana-etl")
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise  # a message to print: Python's own exit says it
        code = exc.code or 0
    else:
        code = 0
    exit_now(code)


def exit_now(code: int) -> None:
    """End the process with `code` once what it has to say is said, without tearing the
    interpreter down object by object: after a sync that took a fifth of a second, for
    nothing (the operating system takes the memory back at once). What Python's own exit
    does that matters still happens first: the threads that must end are waited for,
    the exit handlers run (logging's writes the lines still held), the streams are
    flushed."""
    threading._shutdown()  # type: ignore[attr-defined]  # as Python's exit: threads, then
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what it would say has no reader
            code = code or 1
    os._exit(code)
