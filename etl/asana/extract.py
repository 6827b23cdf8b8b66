"""Reading from Asana: a listing's query and its pages, one entry by gid, the preflight.

No database and no flattening here.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from etl.asana.client import AsanaClient, CallStats, Page
from etl.asana.pagination import Pagination
from etl.config import DateWindow, Scope, ScopeKind
from etl.errors import AsanaError, AuthError, OffsetExpiredError, RequestRejectedError

log = logging.getLogger(__name__)

#: The fields we ask for: exactly the endpoint's allowed entry fields, nothing implicit.
OPT_FIELDS = (
    "attributable_to,attributable_to.name,created_by,created_by.name,duration_minutes,entered_on"
)
#: The single-entry endpoint also knows the entry's task: enough to tell which scopes
#: still hold it.
ONE_ENTRY_FIELDS = OPT_FIELDS + ",task"

#: Scope kind → the query parameter that filters on it (projects are `attributable_to`).
FILTER_PARAM: dict[ScopeKind, str] = {
    "workspace": "workspace",
    "user": "user",
    "project": "attributable_to",
    "portfolio": "portfolio",
    "task": "task",
}

ENTRIES_PATH = "/time_tracking_entries"


#: Asana requires a date filter with `workspace` (`../shared/asana/behaviour.md`): a start
#: date before any entry can have lists them all.
WORKSPACE_START_DATE = "1900-01-01"


DAY = dt.timedelta(days=1)


def query_dates(window: DateWindow, inclusive: bool) -> tuple[dt.date | None, dt.date | None]:
    """The `entered_on_start_date` and `entered_on_end_date` to ask for: the window's own
    bounds when the server is known to read them as inclusive, else one day more at each
    bounded end (an exclusive reading then returns exactly the window, an inclusive one
    a day more at each end, which the listing drops)."""
    if inclusive:
        return window.since, window.until
    return (None if window.since is None else window.since - DAY,
            None if window.until is None else window.until + DAY)


def listing_params(scope: Scope, start: dt.date | None = None,
                   end: dt.date | None = None) -> dict[str, str]:
    """The query parameters that make a listing of `scope`, between these dates (as the
    server reads its bounds: see `query_dates`)."""
    params = {FILTER_PARAM[scope.kind]: scope.gid}
    if start is not None:
        params["entered_on_start_date"] = start.isoformat()
    if end is not None:
        params["entered_on_end_date"] = end.isoformat()
    if scope.kind == "workspace" and start is None and end is None:
        params["entered_on_start_date"] = WORKSPACE_START_DATE
    return params


def scope_params(scope: Scope) -> dict[str, str]:
    """The query parameters that make a listing of the whole of `scope`."""
    return listing_params(scope)


def pagination(scope: Scope, window: DateWindow, page_size: int, inclusive: bool,
               opt_fields: str = OPT_FIELDS) -> Pagination:
    """A listing of `scope` that holds at least the days of `window`, asking for
    `opt_fields` (the details' too, where the list returns them)."""
    params = {**listing_params(scope, *query_dates(window, inclusive)), "opt_fields": opt_fields}
    return Pagination(ENTRIES_PATH, params, page_size)


@dataclass(frozen=True)
class Preflight:
    """What the preflight learnt: how long a request takes, and the day of an entry of
    the scope (None: it has none, or the request failed); with entry details asked for,
    what the list does with their fields (`etl.asana.details.probe_list`)."""

    latency: float
    day: dt.date | None = None
    details: str | None = None


def preflight(client: AsanaClient, scope: Scope) -> Preflight:
    """One `limit=1` request, so that a refused token or plan stops a run before it
    writes anything.

    Raises:
        AuthError: 401 or 402. Any other failure is left for the scope's own listing.
    """
    started = time.monotonic()
    try:
        body = client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1,
                                         "opt_fields": "entered_on"})
    except AuthError:
        raise
    except AsanaError as exc:
        log.debug("preflight on scope %s: %s (left to the listing)", scope, exc.message)
        return Preflight(time.monotonic() - started)
    return Preflight(time.monotonic() - started, first_day(body))


def bounds_inclusive(client: AsanaClient, scope: Scope, day: dt.date) -> bool:
    """Whether Asana reads the date bounds of a listing as inclusive, asked with the day
    of an entry of `scope`: a listing from that day to that day.

    Only an inclusive reading of both bounds returns that day's entries (an exclusive
    one, at either end, returns nothing; a server that ignored the dates would return
    entries of other days too). False means not proved: a listing then asks for a day
    more at each end, which loses nothing under either reading.
    """
    try:
        body = client.get(ENTRIES_PATH, {**listing_params(scope, day, day), "limit": PROBE_LIMIT,
                                         "opt_fields": "entered_on"})
    except AsanaError as exc:
        log.debug("bounds probe on scope %s: %s", scope, exc.message)
        return False
    data = body.get("data")
    days = {e.get("entered_on") for e in data if isinstance(e, dict)} if isinstance(data, list) else set()
    inclusive = days == {day.isoformat()}
    log.debug("Asana reads date bounds as %s", "inclusive" if inclusive else "not proved inclusive",
              extra={"event": "bounds_probe", "fields": {"inclusive": inclusive}})
    return inclusive


#: Entries the bounds probe asks for: enough to see other days if the dates are ignored.
PROBE_LIMIT = 10


def first_day(body: dict[str, Any]) -> dt.date | None:
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        try:
            return dt.date.fromisoformat(data[0].get("entered_on"))
        except (TypeError, ValueError):
            return None
    return None


def iter_time_entry_pages(
    client: AsanaClient, scope: Scope, page_size: int, max_restarts: int = 3,
    stats: CallStats | None = None, window: DateWindow = DateWindow(),
    opt_fields: str = OPT_FIELDS,
) -> Iterator[Page]:
    """Yield the pages of one listing of `scope` that holds the days of `window`, as they
    arrive (constant memory); the caller keeps the entries in the window.

    An expired offset restarts the listing from its first page (pages already yielded
    come again; loading them twice is harmless, and a new `Pagination` does not count
    them as pages of nothing new), at most `max_restarts` times.
    `Page.restart` tells how many restarts came before a page.

    Raises:
        OffsetExpiredError: the offset expired more than `max_restarts` times.
    """
    for restart in range(max_restarts + 1):
        pages = pagination(scope, window, page_size, inclusive=False, opt_fields=opt_fields)
        try:
            while not pages.done:
                page = client.next_page(pages, stats)
                page.restart = restart
                yield page
            return
        except OffsetExpiredError as exc:
            if restart == max_restarts:
                raise expired(exc, max_restarts) from None
            log.warning("scope %s: offset expired, restarting the listing: %s", scope, exc.message)


def expired(exc: OffsetExpiredError, restarts: int) -> OffsetExpiredError:
    """The error a listing fails with once its offsets kept expiring."""
    return OffsetExpiredError(f"{exc.message} (listing restarted {restarts} times)", 400)


def fetch_entry(
    client: AsanaClient, gid: str, stats: CallStats | None = None,
    opt_fields: str = ONE_ENTRY_FIELDS,
) -> dict[str, Any] | None:
    """One entry by gid, or None when Asana answers 404 (it was deleted)."""
    try:
        body = client.get(f"{ENTRIES_PATH}/{gid}", {"opt_fields": opt_fields}, stats)
    except RequestRejectedError as exc:
        if exc.status == 404:
            return None
        raise
    data = body.get("data")
    if not isinstance(data, dict):
        raise RequestRejectedError(f"entry {gid}: the answer has no `data` object")
    return data


def still_in_scope(scope: Scope, entry: dict[str, Any]) -> bool | None:
    """Whether an entry (as `fetch_entry` returns it) still belongs to `scope`'s listing.

    None when the entry alone cannot tell (a portfolio's projects are not in it).
    """

    def gid_of(field: str) -> Any:
        value = entry.get(field)
        return value.get("gid") if isinstance(value, dict) else None

    if scope.kind == "workspace":
        return True
    if scope.kind == "user":
        return gid_of("created_by") == scope.gid
    if scope.kind == "project":
        return gid_of("attributable_to") == scope.gid
    if scope.kind == "task":
        return gid_of("task") == scope.gid if "task" in entry else None
    return None
