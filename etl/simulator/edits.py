"""Edits to what surrounds the entries, as a user of Asana makes them while the server runs:
categories, weekly approvals and rates. Each drops the serialised text of the entries it
changes (a category's name or color, a week's approval status), and only theirs."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from etl.simulator.models import (
    APPROVAL_STATUSES,
    CATEGORY_COLORS,
    Category,
    Rate,
    Timesheet,
    monday,
)

if TYPE_CHECKING:
    from etl.simulator.index import EntryIndex
    from etl.simulator.models import Entry


class DetailEdits:
    """The `Dataset`'s edits of categories, timesheets and rates (a part of it)."""

    if TYPE_CHECKING:
        lock: threading.RLock
        users: dict[str, str]
        projects: dict[str, str]
        entries: dict[str, Entry]
        categories: dict[str, Category]
        timesheets: dict[tuple[str, dt.date], Timesheet]
        rates: dict[str, Rate]
        placeholders: dict[str, str]
        currency_code: str
        index: EntryIndex

        def new_detail_gid(self) -> str: ...
        def _forget(self, gids: Iterable[str]) -> None: ...

    # --- categories -------------------------------------------------------------------

    def add_category(self, name: str, color: str = "none", *, is_archived: bool = False
                     ) -> Category:
        with self.lock:
            category = Category(self.new_detail_gid(), name, _color(color), is_archived)
            self.categories[category.gid] = category
            return category

    def edit_category(self, gid: str, **changes: Any) -> None:
        """Change a category's `name`, `color` or `is_archived`. Entries keep an archived
        category (Asana shows it on the entries that have it)."""
        with self.lock:
            category = self.categories[gid]
            for key, value in changes.items():
                if key not in ("name", "color", "is_archived"):
                    raise KeyError(key)
                setattr(category, key, _color(value) if key == "color" else value)
            if changes.keys() & {"name", "color"}:
                self._forget(g for g, e in self.entries.items() if gid in e.categories)

    def archive_category(self, gid: str, archived: bool = True) -> None:
        self.edit_category(gid, is_archived=archived)

    def delete_category(self, gid: str) -> None:
        """Delete a category: it leaves every entry that had it."""
        with self.lock:
            del self.categories[gid]
            had = [g for g, e in self.entries.items() if gid in e.categories]
            for entry_gid in had:
                entry = self.entries[entry_gid]
                entry.categories = tuple(c for c in entry.categories if c != gid)
            self._forget(had)

    # --- weekly timesheets ------------------------------------------------------------

    def timesheet(self, user_gid: str, day: dt.date) -> Timesheet | None:
        """The user's timesheet of the week `day` falls in, if there is one."""
        return self.timesheets.get((user_gid, monday(day)))

    def set_approval_status(self, user_gid: str, day: dt.date, status: str) -> Timesheet:
        """Set the approval status of the user's week that `day` falls in (made if it has
        none): submit, approve, reject, or recall an approved week to SUBMITTED or DRAFT.
        The week's entries show the new status."""
        status = status.upper()
        if status not in APPROVAL_STATUSES:
            raise ValueError(f"approval_status: {status!r}")
        with self.lock:
            sheet = self._timesheet_for(user_gid, day)
            sheet.approval_status = status
            self._forget(g for g in self.index.by("user_gid").get(user_gid, [])
                         if monday(self.entries[g].entered_on) == sheet.start_date)
            return sheet

    def _timesheet_for(self, user_gid: str, day: dt.date) -> Timesheet:
        """The user's timesheet of that week, made (DRAFT) if it has none."""
        week = monday(day)
        sheet = self.timesheets.get((user_gid, week))
        if sheet is None:
            sheet = Timesheet(self.new_detail_gid(), user_gid, week)
            self.timesheets[(user_gid, week)] = sheet
        return sheet

    # --- rates ------------------------------------------------------------------------

    def add_rate(self, parent_gid: str, resource_gid: str, rate: float,
                 currency_code: str | None = None) -> Rate:
        """A rate of a user or a placeholder (`add_placeholder`) on a project."""
        with self.lock:
            if parent_gid not in self.projects:
                raise KeyError(parent_gid)
            if resource_gid not in self.users and resource_gid not in self.placeholders:
                raise KeyError(resource_gid)
            made = Rate(self.new_detail_gid(), parent_gid, resource_gid, float(rate),
                        currency_code or self.currency_code)
            self.rates[made.gid] = made
            return made

    def edit_rate(self, gid: str, *, rate: float | None = None,
                  currency_code: str | None = None) -> None:
        with self.lock:
            found = self.rates[gid]
            if rate is not None:
                found.rate = float(rate)
            if currency_code is not None:
                found.currency_code = currency_code

    def delete_rate(self, gid: str) -> None:
        with self.lock:
            del self.rates[gid]

    def add_placeholder(self, name: str) -> str:
        with self.lock:
            gid = self.new_detail_gid()
            self.placeholders[gid] = name
            return gid


def _color(color: str) -> str:
    if color not in CATEGORY_COLORS:
        raise ValueError(f"color: {color!r}")
    return color
