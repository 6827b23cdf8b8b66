"""Everything the simulated Asana knows, and the edits a user of Asana makes to it while
the server runs. Generating it is `generate.py` and `details.py`; finding a listing's
entries is `index.py`; showing them as JSON is `render.py`."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from etl.simulator.details import generate_details
from etl.simulator.edits import DetailEdits
from etl.simulator.generate import WORKSPACE_GID, generate_into, long_name, user_weights
from etl.simulator.index import INDEXED, EntryIndex
from etl.simulator.models import (
    BILLABLE_STATUSES,
    Category,
    Entry,
    Rate,
    Timesheet,
    monday,
)
from etl.simulator.render import EntryCache, entry_json

__all__ = ["Dataset", "Entry", "long_name", "user_weights"]


@dataclass(eq=False)
class Dataset(DetailEdits):
    """Everything the simulated Asana knows. Mutate it through its methods (thread-safe):
    each edit drops what it makes stale of the index and of the serialised entries."""

    workspace_gid: str
    users: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)
    portfolios: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    tasks: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    #: the workspace's time tracking categories, archived ones too
    categories: dict[str, Category] = field(default_factory=dict)
    #: a timesheet per (user gid, Monday), for every week a user has entries in
    timesheets: dict[tuple[str, dt.date], Timesheet] = field(default_factory=dict)
    #: hourly rates by gid; `placeholders` are the rated resources that are not users
    rates: dict[str, Rate] = field(default_factory=dict)
    placeholders: dict[str, str] = field(default_factory=dict)
    currency_code: str = "USD"
    #: the order listings come in: "made" (by gid, the order entries were made in) or
    #: "shuffled" (an order unrelated to dates or gids, fixed per entry)
    order: str = "made"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _next_gid: Iterator[int] = field(default_factory=lambda: itertools.count(1_200_000_000_000_001))
    #: categories, timesheets, rates and placeholders draw from their own gids, so that
    #: the entries' gids are those they were before these existed
    _next_detail_gid: Iterator[int] = field(
        default_factory=lambda: itertools.count(1_300_000_000_000_001))
    index: EntryIndex = field(init=False, repr=False)
    serialised: EntryCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = EntryIndex(self)
        self.serialised = EntryCache(self)

    def new_gid(self) -> str:
        return str(next(self._next_gid))

    def new_detail_gid(self) -> str:
        return str(next(self._next_detail_gid))

    @classmethod
    def generate(
        cls,
        seed: int = 1,
        *,
        entries: int = 1000,
        users: int = 12,
        projects: int = 10,
        portfolios: int = 3,
        tasks: int = 60,
        start: dt.date = dt.date(2026, 1, 1),
        days: int = 300,
        order: str = "made",
        categories: int = 8,
    ) -> Dataset:
        """A deterministic dataset: the same arguments always give the same data (see
        `etl.simulator.generate` and `etl.simulator.details`). Entries fall on `days` days
        from `start`; `categories` is how many the workspace has (a few archived)."""
        data = cls(workspace_gid=WORKSPACE_GID, order=order)
        generate_into(data, seed, entries=entries, users=users, projects=projects,
                      portfolios=portfolios, tasks=tasks, start=start, days=days)
        generate_details(data, seed, categories=categories, start=start, days=days)
        return data

    def _changed(self) -> None:
        """The entries changed in a way listings see: drop the index and every text."""
        self.index.clear()
        self.serialised.clear()

    def _forget(self, gids: Iterable[str]) -> None:
        """These entries' content changed, not which listings hold them."""
        self.serialised.forget(gids)

    # --- entries, as a user of Asana edits them ----------------------------------------

    def add_entry(self, task_gid: str, user_gid: str, duration_minutes: int, entered_on: dt.date,
                  gid: str | None = None, *, created_at: dt.datetime | None = None,
                  billable_status: str | None = None, description: str | None = None,
                  categories: Iterable[str] = ()) -> Entry:
        """A new entry, made now unless `created_at` says when; billable if its task is in
        a project, else `notApplicable`, unless `billable_status` says."""
        with self.lock:
            project = self.tasks[task_gid][1]
            if billable_status is None:
                billable_status = "billable" if project else "notApplicable"
            entry = Entry(gid or self.new_gid(), task_gid, user_gid, project, duration_minutes,
                          entered_on, created_at or _now(), billable_status, description)
            entry.categories = _checked(self, entry, {"categories": categories})["categories"]
            self.entries[entry.gid] = entry
            self._timesheet_for(user_gid, entered_on)
            self._changed()
            return entry

    def edit_entry(self, gid: str, **changes: Any) -> None:
        """Change an entry's attributes (`categories`: category gids). Changes the list
        cannot see (billable status, description) drop only that entry's text."""
        with self.lock:
            entry = self.entries[gid]
            for key, value in _checked(self, entry, changes).items():
                setattr(entry, key, value)
            self._timesheet_for(entry.user_gid, entry.entered_on)
            if INDEXED & changes.keys():
                self._changed()
            else:
                self._forget([gid])

    def delete_entry(self, gid: str) -> None:
        with self.lock:
            del self.entries[gid]
            self._changed()

    def rename_user(self, gid: str, name: str) -> None:
        with self.lock:
            self.users[gid] = name
            self.serialised.clear()

    def rename_project(self, gid: str, name: str) -> None:
        with self.lock:
            self.projects[gid] = name
            self.serialised.clear()

    # --- reading, as the API does ------------------------------------------------------

    def approval_status(self, entry: Entry) -> str:
        """The entry's approval status: its user's week's."""
        sheet = self.timesheets.get((entry.user_gid, monday(entry.entered_on)))
        return sheet.approval_status if sheet is not None else "DRAFT"

    def entry_json(self, entry: Entry, fields: AbstractSet[str] | None) -> dict[str, Any]:
        """The entry as the API shows it with these `opt_fields` (None: the default)."""
        return entry_json(self, entry, fields)

    def entries_json(self, gids: list[str], fields: Iterable[str] | None) -> bytes:
        """`entry_json` of these entries as a JSON array (call with `lock` held), each
        serialised once per set of fields until it changes."""
        return self.serialised.array(gids, fields)

    def matching(self, filters: tuple[tuple[str, str], ...], exclusive: bool = False) -> list[str]:
        """Gids of the entries that pass every filter, in a stable order (see `order`).
        Date bounds are inclusive, or with `exclusive` exclusive."""
        with self.lock:
            return self.index.matching(filters, exclusive)


def _checked(data: Dataset, entry: Entry, changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` to an entry, checked: attributes it has, a billable status Asana knows,
    categories of the workspace (as a tuple)."""
    changes = dict(changes)
    for key in changes:
        if not hasattr(entry, key):
            raise KeyError(key)
    if changes.get("billable_status", "billable") not in BILLABLE_STATUSES:
        raise ValueError(f"billable_status: {changes['billable_status']!r}")
    if "categories" in changes:
        changes["categories"] = tuple(changes["categories"])
        for category in changes["categories"]:
            if category not in data.categories:
                raise KeyError(category)
    return changes


def _now() -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
