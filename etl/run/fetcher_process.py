"""The fetcher process itself: what runs on the other side of the pipe (the run's side
is `etl.run.fetcher`).

It owns the Asana client (its connection pool, rate limiter and retry policy) and
`[asana] concurrency` worker threads that take requests from the scheduler
(`etl.run.scheduler`): listings' pages (`etl.run.listings`) and deletion
confirmations (`etl.run.confirmations`). Messages go to the run through a bounded
outbox, many at a time; a loader that falls behind fills it and then blocks the
workers, so memory stays flat. Its log records go on a pipe of their own, each as it is
logged, with the word the run orders its lines by (`etl.logorder`).

It starts by `fork`, `spawn` or `forkserver` alike: everything it needs comes in one
picklable `FetcherConfig`. It ignores SIGINT (the run stops it), and exits when the
run's process goes away, even by SIGKILL: its orders pipe then ends.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import gc
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from etl import logcontext, logorder
from etl.asana.client import AsanaClient, Sleep
from etl.asana.details import preflight_details
from etl.asana.extract import bounds_inclusive, preflight
from etl.config import AsanaSettings, Secret
from etl.run import plan
from etl.run.confirmations import Confirmer
from etl.run.detail_reads import DetailReads
from etl.run.listings import ListAsks, ListingReader, portable
from etl.run.resource_reads import ResourceReads
from etl.run.messages import (
    ConfirmOrder,
    DetailsOrder,
    ListOrder,
    LogLines,
    Preflighted,
    PreflightOrder,
    ResourceOrder,
)
from etl.run.scheduler import ListingTask, RequestScheduler

#: Messages (pages, mostly) the fetcher may hold for the loader: two batches' worth, so
#: that fetching goes on while the loader writes a batch, and memory stays bounded.
OUTBOX_MESSAGES = 100
#: Bytes of messages the fetcher sends at a time, at most (unless one is larger).
POST_BYTES = 1 << 20


@dataclass(frozen=True)
class FetcherConfig:
    """Everything the process needs, pickled when it is spawned. The token stays a
    `Secret` (its repr is `***`); `sleep` is the run's injected sleep (tests pass one
    that does not wait); `min_split_latency` and `log_level` are the run's process's own,
    which a spawned process would not otherwise see."""

    settings: AsanaSettings
    token: Secret
    page_size: int
    sleep: Sleep
    today: dt.date
    min_split_latency: float = plan.MIN_SPLIT_LATENCY
    log_level: int = logging.NOTSET
    #: listings ask for the entries' categories too
    list_categories: bool = False


def serve(config: FetcherConfig, orders: Connection, messages: Connection, logs: Connection,
          inherited: tuple[Connection, ...]) -> None:
    """The process's main: take orders until told to stop or the run is gone.

    `logs`: the pipe of its log records. `inherited`: the run's ends of the pipes, which
    a forked process holds copies of; closed at once, so that the orders pipe ends when
    the run does.
    """
    for connection in inherited:
        connection.close()
    gc.freeze()  # what it was started with lives as long as it does: never scanned again
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the run decides, and stops us
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _forward_logs(logs)  # early: the run's lines wait for its word (etl.logorder)
    plan.MIN_SPLIT_LATENCY = config.min_split_latency
    if config.log_level:
        logging.getLogger("etl").setLevel(config.log_level)
    _keep_heap_flat()
    outbox = _Outbox(messages)
    if os.name == "posix":
        threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    _Fetcher(config, outbox).serve(orders)


class _Fetcher:
    """The client, the scheduler, and the workers that read what it hands out."""

    def __init__(self, config: FetcherConfig, outbox: _Outbox) -> None:
        self.config = config
        self.client = AsanaClient(config.settings, config.token, sleep=config.sleep)
        self.outbox = outbox
        outbox.client = self.client
        self.scheduler = RequestScheduler(self.client.limiter, queues=3)
        self.reader = ListingReader(config.settings, self.client, self.scheduler, outbox.send,
                                    page_size=config.page_size, today=config.today)
        self.reader.asks = ListAsks(categories=config.list_categories)
        self.confirmer = Confirmer(self.client, self.scheduler, outbox.send,
                                   self.reader.stats_of, portable, lambda: self.reader.asks.fields)
        self.details = DetailReads(self.client, self.scheduler, outbox.send, portable)
        self.resources = ResourceReads(self.client, self.scheduler, outbox.send, portable)

    def serve(self, orders: Connection) -> None:
        for n in range(self.config.settings.concurrency):
            threading.Thread(target=self._work, name=f"asana-{n}", daemon=True).start()
        while True:
            try:
                order = orders.recv()
            except (EOFError, OSError):
                order = None
            if order is None:
                break
            if isinstance(order, PreflightOrder):
                threading.Thread(target=self._preflight, args=(order,), daemon=True).start()
            elif isinstance(order, ListOrder):
                self.reader.add(order.listings)
            elif isinstance(order, ConfirmOrder):
                self.confirmer.add(order)
            elif isinstance(order, DetailsOrder):
                self.details.add(order)
            elif isinstance(order, ResourceOrder):
                self.resources.add(order)
        # asked to stop, or the run is gone: nothing here needs finishing
        os._exit(0)

    def _work(self) -> None:
        while True:
            task = self.scheduler.take()
            if task is None:
                continue
            with logcontext.scope_context(task.scope or ""):
                if isinstance(task, ListingTask):
                    self.reader.read(task)
                else:
                    task.send()

    def _preflight(self, order: PreflightOrder) -> None:
        scope = order.scope
        try:
            if order.details:  # and what the list does with the details' fields
                result = preflight_details(self.client, scope)
                self.reader.asks = dataclasses.replace(
                    self.reader.asks, details=result.details == "returned")
            else:
                result = preflight(self.client, scope)
        except BaseException as exc:
            self.outbox.send(Preflighted(portable(exc)))
            return
        self.reader.latencies.append(result.latency)
        self.outbox.send(Preflighted(result=result))
        if result.day is not None and result.latency >= plan.MIN_SPLIT_LATENCY:
            with logcontext.scope_context(scope):  # windows begun after it, asked exactly
                self.reader.inclusive = bounds_inclusive(self.client, scope, result.day)


class _Outbox:
    """Messages to the run, in order: pickled by the thread that sends them, posted to
    the pipe by a thread of its own, as many at a time as are waiting."""

    def __init__(self, messages: Connection) -> None:
        self.messages = messages
        self.client: AsanaClient | None = None  # whose counters each message carries
        self._lock = threading.Lock()
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=OUTBOX_MESSAGES)
        threading.Thread(target=self._post, name="outbox", daemon=True).start()

    def send(self, message: Any) -> None:
        with self._lock:  # the counters of successive messages never go back
            message.stats = dataclasses.replace(self.client.stats)
            self._queue.put(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _post(self) -> None:
        """Move messages from the outbox to the pipe, in order, as many at a time as are
        waiting: this thread gets the GIL only now and then from the busy workers, so a
        message a turn made the pipe the bottleneck."""
        while True:
            batch = [self._queue.get()]
            size = len(batch[0])
            while size < POST_BYTES:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1])
            try:
                self.messages.send(batch)
            except (OSError, EOFError):
                os._exit(0)  # the run is gone


#: glibc's mallopt parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def _keep_heap_flat() -> None:
    """Keep the fetcher's memory flat however long it runs (glibc only; elsewhere a
    no-op). Its worker threads each allocate and free page-sized buffers, and glibc gives
    each thread an arena of its own whose free space fragments and stays resident: the
    fetcher grew from 76 to 95 MB over a 1,000,000-entry sync. One arena, trimmed once a
    second, held it at 70-72 MB, at no measurable cost (the GIL serialises the threads'
    allocations anyway)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, say)
        return
    mallopt(_M_ARENA_MAX, 1)

    def trim() -> None:
        while True:
            time.sleep(1.0)
            malloc_trim(0)

    threading.Thread(target=trim, name="malloc-trim", daemon=True).start()


def _exit_with(parent_pid: int) -> None:
    """Exit when this process's parent is gone (POSIX: it is then adopted, and its parent
    changes), should the orders pipe not say so first. The parent is the run's process,
    or under `forkserver` the fork server, which ends with the run's."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


class _ForwardLogs(logging.Handler):
    """Sends each record to the run's process, which logs it with its own handlers.

    It sends it at once, on the pipe of logs, from the thread that logged it: a record
    is in the pipe when the call that logged it returns, and stays there whatever then
    becomes of this process (even SIGKILL). Each message says until when this process
    has sent every record it made, and a thread says it again every `HEARTBEAT` while
    nothing is logged (`etl.logorder`)."""

    def __init__(self, logs: Connection) -> None:
        super().__init__()
        self.logs = logs
        self._sent = 0.0  # when the last message went (monotonic)
        threading.Thread(target=self._beat, name="log-heartbeat", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:  # under self.lock: one at a time
        try:
            record = copy.copy(record)
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            if not hasattr(record, "scope"):
                record.scope = logcontext.current_scope()  # the run's process adds run_id
            data = pickle.dumps(record, pickle.HIGHEST_PROTOCOL)
        except Exception:
            self.handleError(record)
            return
        self._send([data])

    def _send(self, records: list[bytes]) -> None:
        try:
            self.logs.send(LogLines(records, time.time() - logorder.SETTLE))
        except (OSError, EOFError):
            pass  # the run is gone: its orders pipe ends this process
        self._sent = time.monotonic()

    def _beat(self) -> None:
        while True:
            time.sleep(logorder.HEARTBEAT)
            with self.lock:
                if time.monotonic() - self._sent >= logorder.HEARTBEAT:
                    self._send([])


def _forward_logs(logs: Connection) -> None:
    """Every record that passes its logger's level goes to the run's process, once: no
    handler is left in this process but one on the root, which every logger reaches. The
    run's process then logs it through the same loggers, so it is handled as if logged
    there."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    for logger in loggers:
        logger.handlers = []
        logger.propagate = True
    logging.getLogger().addHandler(_ForwardLogs(logs))
