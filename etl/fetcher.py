"""The fetcher: a run's reading side, in a process of its own.

At Asana's speed a sync waits on the network; against a fast server it is bound by CPU,
and reading (HTTP, JSON, flattening) costs about as much as writing. In one process the
GIL makes the two take turns on one core. So a run forks a fetcher process that owns
the Asana client (its connection pool, rate limiter and retry policy) and `[asana]
concurrency` worker threads. It lists scopes and confirms deletion candidates as the run
orders, flattens every page into row values, and sends them (pickled, several at a time)
through a bounded outbox and a pipe to the run's process, which only writes. A loader
that falls behind fills the outbox and then blocks the workers, so memory stays flat.

Orders go one way (`list`, `confirm`), messages the other (`PageRows`, `ListingDone`,
`Confirmed`, `ConfirmDone`); the fetcher's log records travel as messages too and are
logged by the run's process, with its handlers. Every message carries the client's
counters so far.

The process is forked, so it inherits the settings, the token and the injected `sleep`
without pickling them. It never touches the parent's database connections, ignores
SIGINT (the run stops it), and exits when the run's process goes away, even by SIGKILL.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import ctypes
import ctypes.util
import dataclasses
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from etl import logcontext
from etl.asana import AsanaClient, CallStats, Sleep
from etl.config import AsanaSettings, DateWindow, Scope, Secret
from etl.errors import AsanaError
from etl.extract import fetch_entry, iter_time_entry_pages, preflight
from etl.load import Rejection
from etl.transform import RecordRejected, RowValues, entry_gid, rejected_payload, row_values, to_row

log = logging.getLogger(__name__)

#: How often one scope's listing may restart after an expired offset before it fails.
MAX_LISTING_RESTARTS = 3
#: Messages (pages, mostly) the fetcher may hold for the loader: two batches' worth, so
#: that fetching goes on while the loader writes a batch, and memory stays bounded.
OUTBOX_MESSAGES = 100
#: Bytes of messages the fetcher sends at a time, at most (unless one is larger).
POST_BYTES = 1 << 20


# --- messages (fetcher → run) ----------------------------------------------------------

@dataclass
class PageRows:
    """One page of a scope's listing, flattened: the rows in the run's window, the records
    that failed validation, and the gids of those (seen all the same)."""

    scope: Scope
    number: int
    restart: int
    rows: list[RowValues]
    rejections: list[Rejection]
    rejected_gids: list[str]
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class _Done:
    """A task of a scope ended: in full, or with `error`. `scope_stats` are the calls of
    that scope so far."""

    scope: Scope
    error: BaseException | None = None
    scope_stats: CallStats = field(default_factory=CallStats)
    stats: CallStats = field(default_factory=CallStats)


class ListingDone(_Done):
    """A scope's listing ended."""


@dataclass
class Confirmed:
    """What Asana says of one deletion candidate: the entry, or None for a 404."""

    scope: Scope
    gid: str
    entry: dict[str, Any] | None
    stats: CallStats = field(default_factory=CallStats)


class ConfirmDone(_Done):
    """Every candidate of one `confirm` order was answered (or `error` stopped them)."""


@dataclass
class _Preflighted:
    error: BaseException | None = None
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class _Log:
    record: logging.LogRecord


class FetcherDied(RuntimeError):
    """The fetcher process ended without being asked to."""


# --- the run's side --------------------------------------------------------------------

class Fetcher:
    """The run's handle on its fetcher process: orders out, messages in.

    Use as a context manager: entering starts the process, leaving stops it (at once:
    it holds nothing that needs saving).
    """

    def __init__(self, settings: AsanaSettings, token: Secret, *, window: DateWindow = DateWindow(),
                 page_size: int | None = None, sleep: Sleep = time.sleep) -> None:
        self.settings = settings
        self.token = token
        self.window = window
        self.page_size = page_size or settings.page_size
        self.sleep = sleep
        #: the client's counters, as of the last message
        self.stats = CallStats()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._orders: Connection | None = None
        self._messages: Connection | None = None
        self._pending: collections.deque[bytes] = collections.deque()

    def __enter__(self) -> Fetcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        orders_in, orders_out = context.Pipe(duplex=False)
        messages_in, messages_out = context.Pipe(duplex=False)
        worker = _Worker(self.settings, self.token, self.window, self.page_size, self.sleep)
        self._process = context.Process(
            target=worker.serve, args=(orders_in, messages_out, orders_out, messages_in,
                                       os.getpid()),
            name="asana-etl fetcher", daemon=True,
        )
        self._process.start()
        orders_in.close()  # the child's ends: only the child may hold them now
        messages_out.close()
        self._orders, self._messages = orders_out, messages_in

    def stop(self) -> None:
        """Stop the process (at once) and release the pipes; safe to call twice."""
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            self._orders.send(None)
        self._process.join(timeout=1.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._orders.close()
        self._messages.close()
        self._process = None

    def preflight(self, scope: Scope) -> None:
        """One `limit=1` request, so that a refused token or plan stops the run before it
        writes anything.

        Raises:
            AuthError: 401 or 402. Any other failure is left for the scope's own listing.
        """
        self._order(("preflight", scope))
        while True:
            message = self.receive(timeout=None)
            if isinstance(message, _Preflighted):
                if message.error is not None:
                    raise message.error
                return

    def list(self, scope: Scope) -> None:
        """List `scope` in full: `PageRows` messages, then `ListingDone`."""
        self._order(("list", scope))

    def confirm(self, scope: Scope, gids: list[str]) -> None:
        """Ask Asana about each of these deletion candidates: `Confirmed` messages, then
        `ConfirmDone`."""
        self._order(("confirm", scope, gids))

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
                    raise FetcherDied("the fetcher process ended unexpectedly (exit code "
                                      f"{self._process.exitcode})") from None
            message = pickle.loads(self._pending.popleft())
            if isinstance(message, _Log):
                record = message.record
                logging.getLogger(record.name).handle(record)
                continue
            self.stats = message.stats
            return message

    def _order(self, order: tuple[Any, ...]) -> None:
        try:
            self._orders.send(order)
        except OSError:
            raise FetcherDied("the fetcher process ended unexpectedly") from None


# --- the fetcher's side ----------------------------------------------------------------

class _Worker:
    """What runs in the fetcher process."""

    def __init__(self, settings: AsanaSettings, token: Secret, window: DateWindow,
                 page_size: int, sleep: Sleep) -> None:
        self.settings = settings
        self.token = token
        self.window = window
        self.page_size = page_size
        self.sleep = sleep
        self.scope_stats: dict[Scope, CallStats] = {}
        self._send_lock = threading.Lock()
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=OUTBOX_MESSAGES)

    def serve(self, orders: Connection, messages: Connection, parent_orders: Connection,
              parent_messages: Connection, parent_pid: int) -> None:
        parent_orders.close()  # so that the orders pipe ends when the parent does
        parent_messages.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the run decides, and stops us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.messages = messages
        _keep_heap_flat()
        threading.Thread(target=self._post, daemon=True).start()
        _forward_logs(self._send_raw)
        threading.Thread(target=_exit_with, args=(parent_pid,), daemon=True).start()
        self.client = AsanaClient(self.settings, self.token, sleep=self.sleep)
        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency,
                                  thread_name_prefix="asana")
        tasks: dict[str, Callable[..., None]] = {
            "preflight": self._preflight, "list": self._list, "confirm": self._confirm,
        }
        while True:
            try:
                order = orders.recv()
            except (EOFError, OSError):
                order = None
            if order is None:
                break
            pool.submit(tasks[order[0]], *order[1:])
        # asked to stop, or the run is gone: nothing here needs finishing
        os._exit(0)

    def _send(self, message: Any) -> None:
        with self._send_lock:  # the counters of successive messages never go back
            message.stats = dataclasses.replace(self.client.stats)
            self._outbox.put(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _send_raw(self, message: Any) -> None:
        with self._send_lock:
            self._outbox.put(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _post(self) -> None:
        """Move messages from the outbox to the pipe, in order, as many at a time as are
        waiting: this thread gets the GIL only now and then from the busy workers, so a
        message a turn made the pipe the bottleneck."""
        while True:
            batch = [self._outbox.get()]
            size = len(batch[0])
            while size < POST_BYTES:
                try:
                    batch.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1])
            try:
                self.messages.send(batch)
            except (OSError, EOFError):
                os._exit(0)  # the run is gone

    def _stats(self, scope: Scope) -> CallStats:
        return self.scope_stats.setdefault(scope, CallStats())

    def _preflight(self, scope: Scope) -> None:
        try:
            preflight(self.client, scope)
        except BaseException as exc:
            self._send(_Preflighted(_portable(exc)))
            return
        self._send(_Preflighted())

    def _list(self, scope: Scope) -> None:
        with logcontext.scope_context(scope):
            try:
                log.info("scope %s: listing", scope)
                pages = iter_time_entry_pages(self.client, scope, self.page_size,
                                              MAX_LISTING_RESTARTS, self._stats(scope))
                for page in pages:
                    self._send(self._flatten(scope, page.data, page.number, page.restart))
                    log.debug("scope %s: page %d, %d entries", scope, page.number, len(page.data))
                error = None
            except BaseException as exc:  # reported to the run, which decides
                error = _portable(exc)
            self._send(ListingDone(scope, error, dataclasses.replace(self._stats(scope))))

    def _flatten(self, scope: Scope, data: list[Any], number: int, restart: int) -> PageRows:
        rows: list[RowValues] = []
        rejections: list[Rejection] = []
        rejected: list[str] = []
        window = self.window
        for raw in data:
            try:
                row = to_row(raw)
            except RecordRejected as exc:
                gid = entry_gid(raw)
                rejections.append(Rejection(gid, str(exc), rejected_payload(raw)))
                log.warning("scope %s: rejected entry %s: %s", scope, gid or "(no gid)", exc)
                if gid:  # seen all the same: it must not look deleted
                    rejected.append(gid)
                continue
            if row["entered_on"] in window:  # else backfill --since/--until: not this run's
                rows.append(row_values(row))
        return PageRows(scope, number, restart, rows, rejections, rejected)

    def _confirm(self, scope: Scope, gids: list[str]) -> None:
        with logcontext.scope_context(scope):
            try:
                for gid in gids:
                    self._send(Confirmed(scope, gid, fetch_entry(self.client, gid,
                                                                 self._stats(scope))))
                error = None
            except BaseException as exc:
                error = _portable(exc)
            self._send(ConfirmDone(scope, error, dataclasses.replace(self._stats(scope))))


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives the pipe, else a RuntimeError that says what it was."""
    if isinstance(exc, AsanaError):
        with contextlib.suppress(Exception):
            pickle.loads(pickle.dumps(exc))
            return exc
    log.error("fetcher: %s", exc, exc_info=exc)
    return RuntimeError(f"{exc.__class__.__name__}: {exc}")


#: glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def _keep_heap_flat() -> None:
    """Keep the fetcher's memory flat however long it runs (glibc only; elsewhere a
    no-op). Its worker threads each allocate and free page-sized buffers, and glibc gives
    each thread an arena of its own whose free space fragments and stays resident: the
    fetcher grew from 76 to 95 MB over a 1,000,000-entry sync. One arena, trimmed once a
    second, held it at 70-72 MB, at no measurable cost (the GIL serialises the threads'
    allocations anyway)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 1)

    def trim() -> None:
        while True:
            time.sleep(1.0)
            malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()


def _exit_with(parent_pid: int) -> None:
    """Exit when the run's process is gone (even SIGKILLed, it cannot tell us)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


class _ForwardLogs(logging.Handler):
    """Sends each record to the run's process, which logs it with its own handlers."""

    def __init__(self, send: Callable[[Any], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record = copy.copy(record)
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            if not hasattr(record, "scope"):
                record.scope = logcontext.current_scope()  # the run's process adds run_id
            self.send(_Log(record))
        except Exception:
            self.handleError(record)


def _forward_logs(send: Callable[[Any], None]) -> None:
    """Every record that passes its logger's level goes to the run's process, once: no
    handler is left in this process but one on the root, which every logger reaches. The
    run's process then logs it through the same loggers, so it is handled as if logged
    there."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        logger.handlers = []
        logger.propagate = True
    logging.getLogger().addHandler(_ForwardLogs(send))
