"""The order of a run's log lines: they reach stderr in the order of their timestamps,
the fetcher process's among the run's own.

A run logs from two processes (`etl.run.fetcher`), each from several threads. Each
record is timed when it is made (`LogRecord.created`, the same wall clock in both
processes), so the line printed first must be the one made first. Written as each comes,
they would not be: a record of the fetcher's spends some time crossing to the run's
process, and whatever the run logs in that time would be written before it.

So while a fetcher runs, one writer thread writes the lines (`OrderedHandler`), and it
writes a line only once every process it could come before has said it has nothing
earlier left to send. The fetcher says so with every message on its pipe of logs: it
has sent every record made before `until` (`Source.receive`). It sends each record when
it is logged, and says so again every `HEARTBEAT` while it logs nothing, so that a line
of the run's waits for the fetcher's about `HEARTBEAT` + `SETTLE`. The run's own records
need no such word: they are in the writer's hands when the call that logged them
returns. The fetcher's records made before the run has its id wait for it (see `Source`).

The order holds even when that word is broken: a record made before a line already
written is written with that line's time (a thread of the fetcher's that made a record
may be kept from sending it for a while, hence the margin `SETTLE` that `until` leaves
below its clock; under load that is rare and a few milliseconds), and a line waits
`MAX_HOLD` seconds at most for a process that says nothing (stopped, or starved of
CPU). When the fetcher ends, however it ends, what it sent is written before the run
goes on (`Source.close`); with no fetcher running, lines are written at once, as by any
handler.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import math
import os
import threading
import time
import weakref

from etl import logcontext

#: Seconds between two words of a process that logs nothing: what a line of the run's
#: may wait for the fetcher's.
HEARTBEAT = 0.05
#: Seconds below its clock that a process's `until` stays: a thread that made a record
#: may take that long to send it (it waits its turn for the interpreter).
SETTLE = 0.05
#: The longest a line waits for a process that says nothing, in seconds.
MAX_HOLD = 2.0
#: Records held at most (memory stays bounded); beyond that the oldest is written.
MAX_HELD = 10_000
#: Seconds that closing a source or a handler waits for the lines to be written.
FLUSH_SECONDS = 5.0

#: Over the sources and every handler's records.
_changed = threading.Condition()
_sources: list[Source] = []
_handlers: weakref.WeakSet[OrderedHandler] = weakref.WeakSet()


class Source:
    """Another process whose records this one logs (a fetcher), from when it starts
    (`until`: its records all come later) until `close`.

    Its records belong to the run begun here while it runs (`run_id`), which may come
    after them: the run's first reads go on while it takes its locks, migrates, and
    writes the row that gives it its id. Until then they wait (and so do all lines after
    them), to be written with that id; without one if the run never gets one."""

    def __init__(self) -> None:
        with _changed:
            self.until = time.time()
            self.closed = False
            self._runs_before = logcontext.runs_begun()[0]
            _sources.append(self)

    @property
    def run_id(self) -> int | None:
        """The run begun in this process since this source opened, if any yet."""
        begun, last = logcontext.runs_begun()
        return last if begun > self._runs_before else None

    def receive(self, records: list[logging.LogRecord], until: float) -> None:
        """Log `records` as if logged here; the process has now sent every record it
        made before `until`."""
        for record in records:
            record.log_source = self
            logging.getLogger(record.name).handle(record)
        with _changed:
            if until > self.until:
                self.until = until
                _changed.notify_all()

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """The process sends nothing more: its records and those of this process that
        waited for them are written (within `timeout`) before this returns."""
        with _changed:
            if self.closed:
                return
            self.closed = True
            _sources.remove(self)
            _changed.notify_all()
        for handler in list(_handlers):
            handler.written(timeout)


class OrderedHandler(logging.Handler):
    """Writes each record through `inner`, in the order of their times (see the module).

    Filters that read the logging thread's state (`logcontext.ContextFilter`) go on this
    handler, not `inner`: `inner` may be called from the writer's thread."""

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__()
        self.inner = inner
        self._held: list[tuple[float, int, float, logging.LogRecord]] = []  # a heap
        self._order = itertools.count()
        self._last: logging.LogRecord | None = None  # the last record written
        self._busy = False  # the writer writes records it took
        self._closed = False
        self._writer: threading.Thread | None = None
        with _changed:
            _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with _changed:
                if not (self._held or self._busy) and (self._closed or not _sources):
                    self._write(self._stamped(record))  # nothing to wait for
                    return
                while len(self._held) >= MAX_HELD and not self._closed:
                    _changed.wait()
                held = _held(record)
                heapq.heappush(self._held, (held.created, next(self._order), time.monotonic(),
                                            held))
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_held, name="log-writer",
                                                    daemon=True)
                    self._writer.start()
                if (len(self._held) in (1, MAX_HELD)) or held.created <= self._until():
                    _changed.notify_all()  # else the writer has a word to wait for anyway
        except Exception:
            self.handleError(record)

    def written(self, timeout: float = FLUSH_SECONDS) -> None:
        """Wait (at most `timeout`) until every record held has been written."""
        deadline = time.monotonic() + timeout
        with _changed:
            while (self._held or self._busy) and threading.current_thread() is not self._writer:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                _changed.wait(left)

    def flush(self) -> None:
        self.written()
        self.inner.flush()

    def close(self) -> None:
        """Write what is held, whatever it waits for, then close `inner`."""
        with _changed:
            self._closed = True
            _handlers.discard(self)
            _changed.notify_all()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join(FLUSH_SECONDS)
        self.inner.close()
        super().close()

    def _write_held(self) -> None:
        """The writer's thread: write the records held as each becomes due, in order."""
        while True:
            with _changed:
                due = self._due()
                while not due:
                    if self._closed and not self._held:
                        return
                    _changed.wait(self._wait())
                    due = self._due()
                self._busy = True
            try:
                for record in due:
                    self._write(record)
            finally:
                with _changed:
                    self._busy = False
                    _changed.notify_all()

    def _due(self) -> list[logging.LogRecord]:
        """Take the records that may be written now: those made before every open source
        said it had sent all it made (all, once closed), and any held `MAX_HOLD` or
        beyond `MAX_HELD`."""
        until = self._until()
        now = time.monotonic()
        due = []
        while self._held:
            created, _, since, record = self._held[0]
            if len(self._held) < MAX_HELD and not self._closed and (
                    (created > until and now - since < MAX_HOLD) or _awaits_run(record)):
                break
            due.append(self._stamped(heapq.heappop(self._held)[3]))
        if due:
            _changed.notify_all()  # room for those waiting to hold one
        return due

    def _until(self) -> float:
        """Records made before this time may be written (as far as the sources go)."""
        return math.inf if self._closed else min((s.until for s in _sources), default=math.inf)

    def _wait(self) -> float | None:
        """Seconds until the first record held is due whatever the sources say (or to
        look again whether its run has begun)."""
        if not self._held:
            return None
        if _awaits_run(self._held[0][3]):
            return HEARTBEAT
        return max(0.0, self._held[0][2] + MAX_HOLD - time.monotonic())

    def _stamped(self, record: logging.LogRecord) -> logging.LogRecord:
        """`record`, as the next one written: made before the last one written (it came
        later than its process said), it takes that one's time; from a source, it takes
        its run's id, once there is one."""
        source = getattr(record, "log_source", None)
        if source is not None and getattr(record, "run_id", None) is None:
            record.run_id = source.run_id
        last = self._last
        if last is not None and record.created < last.created:
            record.relativeCreated += (last.created - record.created) * 1000
            record.created, record.msecs = last.created, last.msecs
        self._last = record
        return record

    def _write(self, record: logging.LogRecord) -> None:
        self.inner.handle(record)


def _forget_in_child() -> None:
    """A forked child has its own lines, if any: no lock taken in its parent by a thread
    it does not have, none of its parent's sources, records or writers."""
    global _changed
    _changed = threading.Condition()
    _sources.clear()
    for handler in _handlers:
        handler._held.clear()
        handler._busy, handler._writer = False, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _awaits_run(record: logging.LogRecord) -> bool:
    """A source's record, before the run it belongs to has an id."""
    source = getattr(record, "log_source", None)
    return (source is not None and not source.closed and getattr(record, "run_id", None) is None
            and source.run_id is None)


def _held(record: logging.LogRecord) -> logging.LogRecord:
    """`record` to write later: its message made now, from its arguments as they are now
    (in a copy, unless it came from a source, whose records are made whole)."""
    if record.args is None:
        return record
    held = copy.copy(record)
    held.msg, held.args = record.getMessage(), None
    return held
