"""Reading from Asana: one scope's listing as raw pages, and one entry by gid.

No database and no flattening here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from etl.asana import AsanaClient, CallStats, Page
from etl.config import Scope, ScopeKind
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


def scope_params(scope: Scope) -> dict[str, str]:
    """The query parameters that make a listing of `scope`."""
    params = {FILTER_PARAM[scope.kind]: scope.gid}
    if scope.kind == "workspace":
        params["entered_on_start_date"] = WORKSPACE_START_DATE
    return params


def preflight(client: AsanaClient, scope: Scope) -> None:
    """One `limit=1` request, so that a refused token or plan stops a run before it
    writes anything.

    Raises:
        AuthError: 401 or 402. Any other failure is left for the scope's own listing.
    """
    try:
        client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1, "opt_fields": "gid"})
    except AuthError:
        raise
    except AsanaError as exc:
        log.debug("preflight on scope %s: %s (left to the listing)", scope, exc.message)


def iter_time_entry_pages(
    client: AsanaClient, scope: Scope, page_size: int, max_restarts: int = 3,
    stats: CallStats | None = None,
) -> Iterator[Page]:
    """Yield the pages of one scope's listing as they arrive (constant memory).

    An expired offset restarts the listing from its first page (pages already yielded
    come again; loading them twice is harmless), at most `max_restarts` times.
    `Page.restart` tells how many restarts came before a page.

    Raises:
        OffsetExpiredError: the offset expired more than `max_restarts` times.
    """
    params = {**scope_params(scope), "opt_fields": OPT_FIELDS}
    for restart in range(max_restarts + 1):
        try:
            for page in client.paginate(ENTRIES_PATH, params, page_size, stats):
                page.restart = restart
                yield page
            return
        except OffsetExpiredError as exc:
            if restart == max_restarts:
                raise OffsetExpiredError(
                    f"{exc.message} (listing restarted {max_restarts} times)", 400
                ) from None
            log.warning("scope %s: offset expired, restarting the listing: %s", scope, exc.message)


def fetch_entry(
    client: AsanaClient, gid: str, stats: CallStats | None = None
) -> dict[str, Any] | None:
    """One entry by gid, or None when Asana answers 404 (it was deleted)."""
    try:
        body = client.get(f"{ENTRIES_PATH}/{gid}", {"opt_fields": ONE_ENTRY_FIELDS}, stats)
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
