"""The listings of what lives around the entries: a workspace's time tracking categories,
a user's weekly timesheet approval statuses, a project's rates. Each is one cheap
listing (a page or two), paginated as the entries are; each needs what the Timesheets &
Budgets add-on gives (categories answer 403 without it, timesheets and rates 402).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from etl.asana.pagination import Pagination

CATEGORIES, TIMESHEETS, RATES = "categories", "timesheets", "rates"
#: Rows a page of each listing.
PAGE_SIZE = 100
#: What a refusal of each means to a person: what is missing, and what gives it.
MISSING = {
    CATEGORIES: "time tracking categories",
    TIMESHEETS: "weekly timesheet approvals",
    RATES: "hourly rates (and so cost)",
}


@dataclass(frozen=True)
class Resource:
    """One listing: its kind, what it is of (a workspace, a user, a project: the key its
    answers are filed under), its path and its query."""

    kind: str
    key: str
    path: str
    params: tuple[tuple[str, str], ...]

    def pagination(self, page_size: int = PAGE_SIZE) -> Pagination:
        return Pagination(self.path, dict(self.params), page_size)


def categories(workspace: str, archived: bool) -> Resource:
    """The workspace's categories: the default listing leaves the archived out, which
    `is_archived=true` lists."""
    params = [("workspace", workspace), ("opt_fields", "name,color,is_archived")]
    if archived:
        params.append(("is_archived", "true"))
    return Resource(CATEGORIES, f"{workspace}:{'archived' if archived else 'active'}",
                    "/time_tracking_categories", tuple(params))


def timesheets(workspace: str, user: str, since: dt.date,
               until: dt.date | None = None) -> Resource:
    """A user's weeks from `since` on (to `until`, if given)."""
    params = [("workspace", workspace), ("user", user), ("from_date", since.isoformat())]
    if until is not None:
        params.append(("to_date", until.isoformat()))
    return Resource(TIMESHEETS, f"{user}:{since}", "/timesheet_approval_statuses", (
        *params, ("opt_fields", "user,start_date,end_date,approval_status")))


def rates(project: str) -> Resource:
    """A project's rates, of people and placeholders."""
    return Resource(RATES, project, "/rates", (
        ("parent", project), ("opt_fields", "rate,currency_code,parent,resource")))
