"""The listings around the entries, in the fetcher: categories, timesheets, rates, a page
at a time, each page a single request in the scheduler's queue after the deletion
confirmations (they are few, and finance needs them), before entries' details.

A refusal of the plan (without the Timesheets & Budgets add-on categories answer 403,
timesheets and rates 402) is not an error: the listing ends refused, and its kind is
not asked again by this process. Any other failure (a 403 on one project, say) fails
that listing alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from etl.asana.client import AsanaClient, CallStats
from etl.asana.pagination import Pagination
from etl.asana.resources import CATEGORIES, RATES, TIMESHEETS, Resource
from etl.errors import AsanaError, OffsetExpiredError
from etl.run.messages import ResourceListed, ResourceOrder, ResourcePage
from etl.run.scheduler import RequestScheduler, SingleRequest

#: The scheduler's queue of these listings' pages.
QUEUE = 1
#: Restarts of one listing after an expired offset, before it fails.
MAX_RESTARTS = 3
#: The statuses with which Asana refuses a kind for want of the add-on.
REFUSED = {CATEGORIES: (402, 403), TIMESHEETS: (402,), RATES: (402,)}


class ResourceReads:
    """Answers `ResourceOrder`s: `ResourcePage`s, then a `ResourceListed` a listing."""

    def __init__(self, client: AsanaClient, scheduler: RequestScheduler,
                 send: Callable[[Any], None],
                 portable: Callable[[BaseException], BaseException]) -> None:
        self.client = client
        self.scheduler = scheduler
        self.send = send
        self.portable = portable
        self.stats = {kind: CallStats() for kind in REFUSED}  # requests by kind
        self.refused: dict[str, str] = {}  # kind -> Asana's message
        self._lock = threading.Lock()

    def add(self, order: ResourceOrder) -> None:
        self.scheduler.add_single(QUEUE, (self._next(r, r.pagination(), 0)
                                          for r in order.resources))

    def _next(self, resource: Resource, pages: Pagination, restarts: int) -> SingleRequest:
        return SingleRequest(None, partial(self._read, resource, pages, restarts))

    def _read(self, resource: Resource, pages: Pagination, restarts: int) -> None:
        refused = self.refused.get(resource.kind)
        if refused is not None:
            self._listed(resource, refused=refused)
            return
        try:
            page = self.client.next_page(pages, self.stats[resource.kind])
        except OffsetExpiredError as exc:
            if restarts == MAX_RESTARTS:
                self._listed(resource, error=exc)
            else:
                self.scheduler.add_single(QUEUE, [self._next(resource, resource.pagination(),
                                                             restarts + 1)])
            return
        except AsanaError as exc:
            self._failed(resource, exc)
            return
        except BaseException as exc:
            self._listed(resource, error=self.portable(exc))
            return
        self.send(ResourcePage(resource.kind, resource.key, page.data))
        if pages.done:
            self._listed(resource)
        else:
            self.scheduler.add_single(QUEUE, [self._next(resource, pages, restarts)])

    def _failed(self, resource: Resource, exc: AsanaError) -> None:
        """The plan's refusal (a 402 is classified an AuthError, as for the entries' own
        listings, where it means no time tracking at all: here it means no add-on), or
        the listing's error (a refused token: the run's)."""
        if exc.status in REFUSED[resource.kind]:
            with self._lock:
                self.refused.setdefault(resource.kind, exc.message)
            self._listed(resource, refused=exc.message)
            return
        self._listed(resource, error=self.portable(exc))

    def _listed(self, resource: Resource, **ended: Any) -> None:
        self.send(ResourceListed(resource.kind, resource.key,
                                 kind_requests=self.stats[resource.kind].requests, **ended))
