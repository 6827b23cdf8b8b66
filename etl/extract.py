"""Listing one scope's time tracking entries: raw pages, no database, no flattening."""

from __future__ import annotations

from collections.abc import Iterator

from etl.asana import AsanaClient, Page
from etl.config import Scope, ScopeKind

#: The fields we ask for: exactly the endpoint's allowed entry fields, nothing implicit.
OPT_FIELDS = (
    "attributable_to,attributable_to.name,created_by,created_by.name,duration_minutes,entered_on"
)

#: Scope kind → the query parameter that filters on it (projects are `attributable_to`).
FILTER_PARAM: dict[ScopeKind, str] = {
    "workspace": "workspace",
    "user": "user",
    "project": "attributable_to",
    "portfolio": "portfolio",
    "task": "task",
}

ENTRIES_PATH = "/time_tracking_entries"


def iter_time_entry_pages(client: AsanaClient, scope: Scope, page_size: int) -> Iterator[Page]:
    """Yield the pages of one scope's listing as they arrive (constant memory)."""
    params = {FILTER_PARAM[scope.kind]: scope.gid, "opt_fields": OPT_FIELDS}
    yield from client.paginate(ENTRIES_PATH, params, page_size)
