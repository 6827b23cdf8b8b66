"""The batch loader: what the fetcher sends, written a batch at a time, each batch one
transaction through the run's `Writer`.

A batch gathers whatever is ready, from any scopes: pages' rows, their scope links, what
each pass has seen, rejected records, the answers to deletion confirmations, entries'
details, and the run's counters all commit together, so a crash at any moment leaves the tables
consistent and a re-run completes them. A row the database refuses (too long, out of
range, a constraint) does not fail its batch: the batch is halved until the refused rows
are found, they go to `rejected_records` with the database's reason, and the rest load.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import sqlalchemy as sa

from etl.config import Scope
from etl.run.deletions import apply_confirmations
from etl.run.dimensions import store_resource
from etl.run.messages import Confirmed, DetailRead, PageRows, ResourcePage
from etl.run.result import ScopeResult
from etl.run.writer import RowRefused, Writer
from etl.store import runs
from etl.store.details import store_details
from etl.store.dimensions import link_categories
from etl.store.links import link_batch, mark_all_seen
from etl.store.load import UpsertCounts, insert_rejected, upsert_entries
from etl.store.runs import PageCounts
from etl.transform import VALUE_COLUMNS, DetailValues, Rejection, RowValues

log = logging.getLogger(__name__)

#: Rows the loader writes in one transaction, at most (pages that are ready go together).
BATCH_ROWS = 5000
#: Characters of the rows' raw records a batch holds, at most: what a batch weighs in
#: memory follows its rows' size, and entries with long names (a raw record of 800
#: characters, three times the usual) made a full batch weigh three times as much. The
#: usual 5,000 rows of about 250 characters stay under it.
BATCH_CHARS = 1_500_000
#: Seconds the loader waits for more pages before it writes a batch that is not full.
BATCH_WAIT = 0.1
#: Where a row's raw record sits in `RowValues`.
RAW = VALUE_COLUMNS.index("raw")
_RAW = operator.itemgetter(RAW)
#: The most of a refused entry's record that `rejected_records.payload` keeps.
MAX_REFUSED_PAYLOAD = 1_000_000

Batch = list[PageRows | Confirmed | DetailRead | ResourcePage]
#: The messages a batch is made of.
_BATCHED = (PageRows, Confirmed, DetailRead, ResourcePage)


@dataclass
class _Parts:
    """A batch taken apart by what each part is written with."""

    rows: list[tuple[Scope, RowValues]] = field(default_factory=list)
    listed: dict[Scope, list[str]] = field(default_factory=dict)  # loaded: the scope links
    also: dict[Scope, list[str]] = field(default_factory=dict)  # seen, not loaded: rejected
    rejections: dict[Scope, list[Rejection]] = field(default_factory=dict)
    answers: dict[Scope, list[Confirmed]] = field(default_factory=dict)
    pages: dict[Scope, int] = field(default_factory=dict)
    details: list[tuple[str, DetailValues]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # details refused, or not storable
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    resources: list[ResourcePage] = field(default_factory=list)


@dataclass
class Loaded:
    """What a batch did: to each scope, its counts and its pages; to entries' details,
    how many changed."""

    scopes: dict[Scope, tuple[PageCounts, int]]
    details_changed: int = 0

    def add_to(self, results: dict[Scope, ScopeResult]) -> None:
        """Count the batch in its scopes' results."""
        for scope, (counts, pages) in self.scopes.items():
            results[scope].pages += pages
            results[scope].counts.add(counts)


class BatchLoader:
    """Writes the run `run_id`'s batches; `load_seconds` is the time that took."""

    def __init__(self, writer: Writer, run_id: int) -> None:
        self.writer = writer
        self.run_id = run_id
        self.load_seconds = 0.0

    def gather(self, message: Any, receive: Callable[[float], Any],
               wanted: Callable[[Scope], bool]) -> tuple[Batch, Any]:
        """A batch, beginning with `message`: pages, confirmations and details, up to
        `BATCH_ROWS` rows (or `BATCH_CHARS` of raw records) or what came within
        `BATCH_WAIT` (a batch's fixed costs, paid for a page or two, were half the
        loader's time). Messages of scopes not `wanted` (closed) are dropped. Returns the
        batch, and the message that ended it (None: it is full)."""
        batch: Batch = []
        rows = chars = 0
        deadline = time.monotonic() + BATCH_WAIT
        with _collector_held():
            while isinstance(message, _BATCHED):
                if isinstance(message, (DetailRead, ResourcePage)) or wanted(message.scope):
                    batch.append(message)
                    if isinstance(message, PageRows):
                        rows += len(message.rows)
                        chars += sum(map(len, map(_RAW, message.rows)))
                    else:
                        rows += 1
                if rows >= BATCH_ROWS or chars >= BATCH_CHARS:
                    return batch, None
                message = receive(max(0.0, deadline - time.monotonic()))
        return batch, message

    def load(self, batch: Batch) -> Loaded:
        """Write `batch` in one transaction; returns what it did.

        Raises:
            DatabaseFailed: the database failed (nothing of the batch was written).
            LockError: another run took one of this run's scopes.
        """
        started = time.monotonic()
        now = runs.utcnow()
        with _collector_held():
            parts = _split(batch)
            while True:
                try:
                    counts, changed = self.writer.transaction(
                        lambda conn: self._write(conn, parts, now), refusable=True)
                    break
                except RowRefused as refused:
                    bad = self._refused_rows(parts.rows, now)
                    if not bad:  # not a row's value after all: the batch as a whole
                        raise self.writer.failure(refused, "other") from refused
                _set_aside(parts, bad)
        self.load_seconds += time.monotonic() - started
        return Loaded({scope: (counts.get(scope, PageCounts()), pages)
                       for scope, pages in parts.pages.items()}, changed)

    def _write(self, conn: sa.Connection, parts: _Parts, now: dt.datetime
               ) -> tuple[dict[Scope, PageCounts], int]:
        counts: dict[Scope, PageCounts] = {}
        upserted = upsert_entries(conn, parts.rows, now)
        linked_before = link_batch(conn, parts.listed, parts.also, now, upserted.new)
        mark_all_seen(conn, self.run_id, linked_before)
        for scope in parts.listed:
            rejections = parts.rejections[scope]
            insert_rejected(conn, self.run_id, scope, rejections, now)
            u = upserted.counts.get(scope, UpsertCounts())
            counts[scope] = PageCounts(
                entries=u.inserted + u.updated + u.unchanged + len(rejections),
                inserted=u.inserted, updated=u.updated, unchanged=u.unchanged,
                rejected=len(rejections),
            )
        for scope, answered in parts.answers.items():
            confirmed = apply_confirmations(conn, self.run_id, scope, answered, now)
            counts.setdefault(scope, PageCounts()).add(confirmed)
        changed = (store_details(conn, parts.details, now, parts.unreadable)
                   if parts.details or parts.unreadable else 0)
        if parts.categories:  # an entry's links follow it: those it was listed with now
            loaded = {gid for gids in parts.listed.values() for gid in gids}
            link_categories(conn, {gid: carried for gid, carried in parts.categories.items()
                                   if gid in loaded})
        for page in parts.resources:
            store_resource(conn, page)
        runs.record_batch(conn, self.run_id, {
            scope: (counts.get(scope, PageCounts()), pages) for scope, pages in parts.pages.items()})
        return counts, changed

    def _refused_rows(self, rows: list[tuple[Scope, RowValues]], now: dt.datetime
                      ) -> dict[int, str]:
        """The rows of a batch that the database refuses, each with its reason: found by
        halving, each half written in a transaction that is rolled back."""
        found: dict[int, str] = {}

        def search(lo: int, hi: int) -> None:
            reason = self.writer.probe(lambda conn: upsert_entries(conn, rows[lo:hi], now))
            if reason is None:
                return
            if hi - lo == 1:
                found[lo] = reason
                return
            search(lo, (lo + hi) // 2)
            search((lo + hi) // 2, hi)

        search(0, len(rows))
        return found


@contextlib.contextmanager
def _collector_held() -> Iterator[None]:
    """Python's cycle collector off while a batch is gathered or written, as it was
    before after: a batch's tens of thousands of objects (rows, their tuples, the
    pickles' strings) hold no cycle and are freed with it, but a collection in the
    middle of one scanned them all, again and again (a tenth of the loader's time)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _split(batch: Batch) -> _Parts:
    parts = _Parts()
    for message in batch:
        if isinstance(message, ResourcePage):
            parts.resources.append(message)
            continue
        if isinstance(message, DetailRead):
            if message.values is not None:
                parts.details.append((message.gid, message.values))
            elif message.problem is not None:
                parts.unreadable.append(message.gid)
            continue
        scope = message.scope
        if isinstance(message, PageRows):
            parts.details.extend(message.details)
            parts.categories.update(message.categories)
        if isinstance(message, Confirmed):
            parts.answers.setdefault(scope, []).append(message)
            parts.pages.setdefault(scope, 0)
            continue
        parts.pages[scope] = parts.pages.get(scope, 0) + 1
        parts.rows.extend(zip(repeat(scope), message.rows))
        parts.listed.setdefault(scope, []).extend([values[0] for values in message.rows])
        parts.also.setdefault(scope, []).extend(message.rejected_gids)
        parts.rejections.setdefault(scope, []).extend(message.rejections)
    return parts


def _set_aside(parts: _Parts, bad: dict[int, str]) -> None:
    """The refused rows become rejected records with the database's reason; the rest of
    the batch is written again."""
    for i, reason in bad.items():
        scope, values = parts.rows[i]
        parts.listed[scope].remove(values[0])
        parts.also[scope].append(values[0])
        parts.rejections[scope].append(Rejection(values[0], f"the database refused it: {reason}",
                                                 _capped(values[RAW])))
    log.warning("%d entr%s set aside: the database refused %s (%s)", len(bad),
                "y" if len(bad) == 1 else "ies", "it" if len(bad) == 1 else "them",
                next(iter(bad.values())))
    parts.rows = [row for i, row in enumerate(parts.rows) if i not in bad]


def _capped(payload: str) -> str:
    if len(payload) <= MAX_REFUSED_PAYLOAD:
        return payload
    return payload[:MAX_REFUSED_PAYLOAD] + f"... ({len(payload)} characters in all)"
