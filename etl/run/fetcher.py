"""The fetcher: a run's reading side, in a process of its own; this is the run's handle
on it (the process's side is `etl.run.fetcher_process`).

At Asana's speed a sync waits on the network; against a fast server it is bound by CPU,
and reading (HTTP, JSON, flattening) costs about as much as writing. In one process the
GIL makes the two take turns on one core. So a run starts a fetcher process that reads
listings and confirms deletion candidates as the run orders, flattens every page into
row values, and sends them (pickled, several at a time) through a pipe to the run's
process, which only writes. Its log records come on a pipe of their own, read by a
thread of the run's process as they come (`etl.logorder` orders them among the run's).

How the process starts: by `fork` on Linux (nothing to import again, and safe here:
it starts before the run opens a database connection, and uses none of its parent's
locks), by `spawn` elsewhere (macOS, where forking is unsafe, and Windows, which has no
fork). `ASANA_ETL_FETCHER_START=spawn|forkserver|fork` chooses one, where the platform
has it; the tests run with each.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from etl import logorder
from etl.asana.client import CallStats, Sleep
from etl.asana.extract import Preflight
from etl.asana.resources import Resource
from etl.config import AsanaSettings, Scope, Secret
from etl.errors import ConfigError, FetcherDied
from etl.run import plan
from etl.run.fetcher_process import FetcherConfig, serve
from etl.run.messages import (
    ConfirmOrder,
    DetailsOrder,
    ListOrder,
    LogLines,
    Preflighted,
    PreflightOrder,
    ResourceOrder,
)
from etl.run.plan import Listing

#: The environment variable that chooses how the fetcher process starts.
START_METHOD_ENV = "ASANA_ETL_FETCHER_START"
#: Seconds `Fetcher.stop` waits for the fetcher's last log lines to be written.
LOGS_SECONDS = 10.0


def start_method() -> str:
    """How the fetcher process starts: `ASANA_ETL_FETCHER_START` if set, else `fork` on
    Linux and `spawn` elsewhere.

    Raises:
        ConfigError: the variable names a method this platform does not have.
    """
    wanted = os.environ.get(START_METHOD_ENV, "").strip().lower()
    available = multiprocessing.get_all_start_methods()
    if wanted:
        if wanted not in available:
            raise ConfigError(f"{START_METHOD_ENV}={wanted}: this platform starts processes "
                              f"by {', '.join(available)}")
        return wanted
    return "fork" if sys.platform.startswith("linux") else "spawn"


class Fetcher:
    """The run's handle on its fetcher process: orders out, messages in.

    Use as a context manager: entering starts the process, leaving stops it (at once:
    it holds nothing that needs saving). `today` is the run's UTC date, for the windows
    of listings split on their first page.
    """

    def __init__(self, settings: AsanaSettings, token: Secret, *, page_size: int | None = None,
                 sleep: Sleep = time.sleep, today: dt.date | None = None,
                 list_categories: bool = False) -> None:
        """`list_categories`: listings ask for the entries' categories too."""
        self.settings = settings
        self.list_categories = list_categories
        self.token = token
        self.page_size = page_size or settings.page_size
        self.sleep = sleep
        self.today = today or dt.datetime.now(dt.UTC).date()
        #: the client's counters, as of the last message
        self.stats = CallStats()
        #: how the process was started
        self.method: str | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._orders: Connection | None = None
        self._messages: Connection | None = None
        self._pending: collections.deque[bytes] = collections.deque()
        self._logs: _LogReader | None = None

    def __enter__(self) -> Fetcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.method = start_method()
        context = multiprocessing.get_context(self.method)
        orders_in, orders_out = context.Pipe(duplex=False)
        messages_in, messages_out = context.Pipe(duplex=False)
        logs_in, logs_out = context.Pipe(duplex=False)
        config = FetcherConfig(self.settings, self.token, self.page_size, self.sleep, self.today,
                               min_split_latency=plan.MIN_SPLIT_LATENCY,
                               log_level=logging.getLogger("etl").getEffectiveLevel(),
                               list_categories=self.list_categories)
        # a forked process holds copies of this side's ends too, and must close them; a
        # spawned one is given only its own
        inherited = (orders_out, messages_in, logs_in) if self.method == "fork" else ()
        self._process = context.Process(
            target=serve, args=(config, orders_in, messages_out, logs_out, inherited),
            name="asana-etl fetcher", daemon=True,
        )
        self._logs = _LogReader()  # before it starts: its records all come later
        try:
            self._process.start()
        except BaseException:
            self._logs.stop()
            raise
        finally:
            orders_in.close()  # the child's ends: only the child may hold them now
            messages_out.close()
            logs_out.close()
        self._orders, self._messages = orders_out, messages_in
        self._logs.start(logs_in)

    def stop(self) -> None:
        """Stop the process (at once) and release the pipes, once its lines are logged
        here; safe to call twice."""
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            self._orders.send(None)
        self._process.join(timeout=1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._logs.stop()  # its pipe of logs ended with it
        self._orders.close()
        self._messages.close()
        self._process = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def preflight(self, scope: Scope, details: bool = False) -> Preflight:
        """One `limit=1` request, so that a refused token or plan stops the run before it
        writes anything; with `details`, a second asks the list for the entries'
        details (`asana.details.probe_list`: later listings ask for them where the list
        returns them). When requests are slow enough for listings to be split
        (`plan.MIN_SPLIT_LATENCY`), the fetcher then asks, while the run goes on, how
        Asana reads date bounds (`extract.bounds_inclusive`): windows that begin after
        the answer are asked for exactly.

        Raises:
            AuthError: 401 or 402. Any other failure is left for the scope's own listing.
        """
        self._order(PreflightOrder(scope, details))
        while True:
            message = self.receive(timeout=None)
            if isinstance(message, Preflighted):
                if message.error is not None:
                    raise message.error
                return message.result

    def list(self, listings: Sequence[Listing]) -> None:
        """Read these listings (the windows of each scope's partition what the run reads
        of it), all in one order so that the largest go first: `PageRows` messages, then
        one `ScopeListed` a scope."""
        self._order(ListOrder(list(listings)))

    def confirm(self, scope: Scope, gids: list[str]) -> None:
        """Ask Asana about each of these deletion candidates: `Confirmed` messages, then
        `ConfirmDone`."""
        self._order(ConfirmOrder(scope, gids))

    def details(self, gids: list[str]) -> None:
        """Read these entries' details: `DetailRead` messages, then `DetailsDone`."""
        self._order(DetailsOrder(gids))

    def resources(self, wanted: list[Resource]) -> None:
        """Read these listings around the entries: `ResourcePage` messages, then one
        `ResourceListed` each."""
        self._order(ResourceOrder(wanted))

    def receive(self, timeout: float | None) -> Any:
        """The next message, or None if none came within `timeout` seconds.

        Raises:
            FetcherDied: the process is gone.
        """
        while True:
            if not self._pending:
                if not self._messages.poll(timeout):
                    return None
                try:
                    self._pending.extend(self._messages.recv())
                except (EOFError, OSError):
                    self._process.join(timeout=1.0)
                    raise FetcherDied(_died(self._process.exitcode, self.method)) from None
            message = pickle.loads(self._pending.popleft())
            self.stats = message.stats
            return message

    def _order(self, order: Any) -> None:
        try:
            self._orders.send(order)
        except OSError:
            raise FetcherDied("the fetcher process ended unexpectedly") from None


def _died(code: int | None, method: str | None) -> str:
    hint = ""
    if code == 1 and method != "fork":
        hint = (f"; started by {method}, it imports the script that runs the run "
                "again, so a script must call run_sync under `if __name__ == "
                "\"__main__\":`")
    return f"the fetcher process ended unexpectedly (exit code {code}){hint}"


class _LogReader:
    """The fetcher's log records in the run's process: a thread logs them as they come,
    whatever the run's thread is doing (a transaction may take seconds), until the
    process ends and its pipe of logs with it; `etl.logorder` orders them among the
    run's, by what each message says (`source`)."""

    def __init__(self) -> None:
        self.source = logorder.Source()
        self._thread: threading.Thread | None = None

    def start(self, logs: Connection) -> None:
        self._thread = threading.Thread(target=self._read, args=(logs,), name="fetcher-logs",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Once the process is gone: its last lines are written (unless stderr takes
        more than `LOGS_SECONDS`)."""
        if self._thread is not None:
            self._thread.join(LOGS_SECONDS)
        self.source.close()

    def _read(self, logs: Connection) -> None:
        try:
            while True:
                try:
                    lines: LogLines = logs.recv()
                except (EOFError, OSError):
                    return
                self.source.receive([pickle.loads(data) for data in lines.records], lines.until)
        finally:
            self.source.close()
            logs.close()
