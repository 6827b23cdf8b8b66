"""Deletion confirmations in the fetcher: one `GET /time_tracking_entries/{gid}` a
candidate, each a single request that the scheduler sends when no listing needs the
turn, so they fill the gaps of the budget side by side."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from etl.asana.client import AsanaClient, CallStats
from etl.asana.extract import fetch_entry
from etl.config import Scope
from etl.run.messages import ConfirmDone, Confirmed, ConfirmOrder
from etl.run.scheduler import RequestScheduler, SingleRequest
from etl.dimensions import entry_categories
from etl.transform import RecordRejected, listed_content

#: The scheduler's queue of confirmations: the first after the listings.
QUEUE = 0


@dataclass(eq=False)
class _Order:
    """One `ConfirmOrder`: candidates still to answer, and the first error."""

    scope: Scope
    left: int
    error: BaseException | None = None


class Confirmer:
    """Answers `ConfirmOrder`s: a `Confirmed` a candidate, then one `ConfirmDone`.

    `stats_of(scope)` gives the counters a scope's calls go to; `portable(exc)` what an
    error may cross the pipe as.
    """

    def __init__(self, client: AsanaClient, scheduler: RequestScheduler,
                 send: Callable[[Any], None], stats_of: Callable[[Scope], CallStats],
                 portable: Callable[[BaseException], BaseException],
                 list_fields: Callable[[], str]) -> None:
        self.client = client
        self.scheduler = scheduler
        self.send = send
        self.stats_of = stats_of
        self.portable = portable
        self.list_fields = list_fields
        self._lock = threading.Lock()

    def add(self, order: ConfirmOrder) -> None:
        state = _Order(order.scope, len(order.gids))
        self.scheduler.add_single(QUEUE, (SingleRequest(order.scope, partial(self._confirm, state, gid))
                                          for gid in order.gids))

    def _confirm(self, order: _Order, gid: str) -> None:
        stats = self.stats_of(order.scope)  # the scope was listed before its candidates came
        if order.error is None:
            try:
                self.send(self._answer(order.scope, gid, stats))
            except BaseException as exc:
                order.error = order.error or self.portable(exc)
        with self._lock:
            order.left -= 1
            last = order.left == 0
        if last:
            self.send(ConfirmDone(order.scope, order.error, dataclasses.replace(stats)))

    def _answer(self, scope: Scope, gid: str, stats: CallStats) -> Confirmed:
        """The entry with exactly the fields its listing returns (so that an entry that
        did not change does not look changed), and its task."""
        fields = self.list_fields()
        raw = fetch_entry(self.client, gid, stats, opt_fields=f"{fields},task")
        if raw is None:
            return Confirmed(scope, gid, None)
        try:
            categories = entry_categories(raw) if "categories" in fields.split(",") else None
        except RecordRejected:
            categories = None
        return Confirmed(scope, gid, listed_content(raw), task=raw.get("task"),
                         categories=categories)
