"""What the simulated Asana holds: entries and the objects around them (categories,
weekly timesheets, rates), with the enums Asana spells them in."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

#: An entry's `billable_status`, as Asana spells it.
BILLABLE_STATUSES = ("billable", "nonBillable", "notApplicable")
#: A timesheet's (and so its entries') `approval_status`: DRAFT → SUBMITTED → APPROVED or
#: REJECTED, and an APPROVED week can be recalled.
APPROVAL_STATUSES = ("DRAFT", "SUBMITTED", "APPROVED", "REJECTED")
#: The colors a time tracking category can have.
CATEGORY_COLORS = ("aqua", "blue", "blue-green", "cool-gray", "green", "hot-pink", "indigo",
                   "magenta", "none", "orange", "pink", "purple", "red", "yellow",
                   "yellow-green", "yellow-orange")


@dataclass
class Entry:
    """A time tracking entry. `user_gid` is its `created_by`; `categories` are category
    gids; its `approval_status` is its user's week's (`Dataset.approval_status`)."""

    gid: str
    task_gid: str
    user_gid: str
    attributable_to: str | None
    duration_minutes: int
    entered_on: dt.date
    created_at: dt.datetime | None = None
    billable_status: str = "notApplicable"
    description: str | None = None
    categories: tuple[str, ...] = ()


@dataclass
class Category:
    gid: str
    name: str
    color: str = "none"
    is_archived: bool = False


@dataclass
class Timesheet:
    """One user's week, Monday (`start_date`) to Sunday, and its approval status."""

    gid: str
    user_gid: str
    start_date: dt.date
    approval_status: str = "DRAFT"

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=6)


@dataclass
class Rate:
    """An hourly rate of a resource (a user, or a placeholder) on a project (`parent_gid`)."""

    gid: str
    parent_gid: str
    resource_gid: str
    rate: float
    currency_code: str = "USD"


def monday(day: dt.date) -> dt.date:
    """The Monday of the week (Monday to Sunday) `day` falls in."""
    return day - dt.timedelta(days=day.weekday())
