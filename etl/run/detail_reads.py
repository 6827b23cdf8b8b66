"""Entries' details in the fetcher: one `GET /time_tracking_entries/{gid}` an entry, each
a single request in the scheduler's last queue, so that they take only the turns no
listing and no deletion confirmation needs, and never slow a listing."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from etl.asana.client import AsanaClient, CallStats
from etl.asana.details import fetch_details
from etl.errors import AuthError, RequestRejectedError, RetriableError
from etl.run.messages import DetailRead, DetailsDone, DetailsOrder
from etl.run.scheduler import RequestScheduler, SingleRequest
from etl.transform import RecordRejected, to_details

log = logging.getLogger(__name__)

#: The scheduler's queue of details: the last, after deletion confirmations and the
#: listings around the entries.
QUEUE = 2
#: Entries in a row whose GET failed after its retries (a 5xx, a timeout) before the
#: details stop for the run: one entry Asana keeps failing on is passed over, an Asana
#: that fails them all is not asked on and on.
FAILURES_IN_A_ROW = 3


@dataclass(eq=False)
class _Order:
    """One `DetailsOrder`: entries still to answer, and the error that stopped it."""

    left: int
    error: BaseException | None = None


class DetailReads:
    """Answers `DetailsOrder`s: a `DetailRead` an entry, then one `DetailsDone`.
    `stats` count the details' requests alone; `portable(exc)` is what an error may
    cross the pipe as."""

    def __init__(self, client: AsanaClient, scheduler: RequestScheduler,
                 send: Callable[[Any], None],
                 portable: Callable[[BaseException], BaseException]) -> None:
        self.client = client
        self.scheduler = scheduler
        self.send = send
        self.portable = portable
        self.stats = CallStats()
        self._lock = threading.Lock()
        self._failures_in_a_row = 0

    def add(self, order: DetailsOrder) -> None:
        state = _Order(len(order.gids))
        self.scheduler.add_single(QUEUE, (SingleRequest(None, partial(self._read, state, gid))
                                          for gid in order.gids))

    def _read(self, order: _Order, gid: str) -> None:
        if order.error is None:
            try:
                self.send(self._answer(gid))
            except BaseException as exc:  # Asana away for good, a refused token: stop
                order.error = order.error or self.portable(exc)
        with self._lock:
            order.left -= 1
            last = order.left == 0
        if last:
            self.send(DetailsDone(order.error, dataclasses.replace(self.stats)))

    def _answer(self, gid: str) -> DetailRead:
        """What Asana says of one entry's details (see `DetailRead`).

        Raises:
            AuthError, RetriableError: the token failed, or Asana failed on
                `FAILURES_IN_A_ROW` entries in a row: not this entry alone.
        """
        try:
            raw = fetch_details(self.client, gid, self.stats)
        except AuthError:
            raise
        except RequestRejectedError as exc:  # this entry: a 403, say
            return DetailRead(gid, problem=exc.message)
        except RetriableError as exc:  # this entry, once more, or Asana away?
            with self._lock:
                self._failures_in_a_row += 1
                away = self._failures_in_a_row >= FAILURES_IN_A_ROW
            if away:
                raise
            log.warning("details of entry %s not read this run: %s", gid, exc)
            return DetailRead(gid, failed=True)
        with self._lock:
            self._failures_in_a_row = 0
        if raw is None:
            return DetailRead(gid, gone=True)
        try:
            values, missing = to_details(raw)
        except RecordRejected as exc:
            log.warning("details of entry %s set aside: %s", gid, exc)
            return DetailRead(gid, problem=str(exc))
        return DetailRead(gid, values, missing)
