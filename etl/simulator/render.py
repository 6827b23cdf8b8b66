"""How the simulated Asana shows its objects as JSON, and the cache of entries already
serialised, by the `opt_fields` asked for (serialising each entry anew for every page made
the simulator, not the tool, the benchmarks' bottleneck)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import orjson

from etl.simulator.models import Category, Entry, Rate, Timesheet

if TYPE_CHECKING:
    from etl.simulator.dataset import Dataset

CATEGORY_FIELDS = frozenset({"categories", "categories.name", "categories.color"})


def timestamp(moment: dt.datetime | None) -> str | None:
    """A UTC moment as Asana writes it: `2026-03-04T10:21:33.123Z`."""
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def entry_json(data: Dataset, entry: Entry, fields: AbstractSet[str] | None) -> dict[str, Any]:
    """The entry as the API shows it with these `opt_fields` (None: the default). Which
    fields an endpoint may give is the caller's business: this shows what it is asked."""
    full: dict[str, Any] = {"gid": entry.gid, "resource_type": "time_tracking_entry"}
    wanted = fields if fields is not None else {"duration_minutes"}

    def compact(kind: str, gid: str | None, names: dict[str, str], prefix: str) -> Any:
        if gid is None:
            return None
        obj: dict[str, Any] = {"gid": gid, "resource_type": kind}
        if f"{prefix}.name" in wanted:
            obj["name"] = names[gid]
        return obj

    if "duration_minutes" in wanted:
        full["duration_minutes"] = entry.duration_minutes
    if "entered_on" in wanted:
        full["entered_on"] = entry.entered_on.isoformat()
    if wanted & {"attributable_to", "attributable_to.name"}:
        full["attributable_to"] = compact("project", entry.attributable_to, data.projects,
                                          "attributable_to")
    if wanted & {"created_by", "created_by.name"}:
        full["created_by"] = compact("user", entry.user_gid, data.users, "created_by")
    if wanted & {"task", "task.name"}:
        task = {"gid": entry.task_gid, "resource_type": "task"}
        if "task.name" in wanted:
            task["name"] = data.tasks[entry.task_gid][0]
        full["task"] = task
    if "created_at" in wanted:
        full["created_at"] = timestamp(entry.created_at)
    if "billable_status" in wanted:
        full["billable_status"] = entry.billable_status
    if "approval_status" in wanted:
        full["approval_status"] = data.approval_status(entry)
    if "description" in wanted:
        full["description"] = entry.description
    if wanted & CATEGORY_FIELDS:
        full["categories"] = [_category_compact(data.categories[gid], wanted)
                              for gid in entry.categories]
    return full


def _category_compact(category: Category, wanted: AbstractSet[str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"gid": category.gid, "resource_type": "time_tracking_category"}
    if "categories.name" in wanted:
        obj["name"] = category.name
    if "categories.color" in wanted:
        obj["color"] = category.color
    return obj


class EntryCache:
    """Entries as JSON text, by the set of `opt_fields` asked for, then by gid."""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self._serialised: dict[frozenset[str] | None, dict[str, bytes]] = {}

    def clear(self) -> None:
        self._serialised.clear()

    def forget(self, gids: Iterable[str]) -> None:
        """Drop these entries' text under every set of fields (their content changed)."""
        gids = list(gids)
        for cache in self._serialised.values():
            for gid in gids:
                cache.pop(gid, None)

    def array(self, gids: list[str], fields: Iterable[str] | None) -> bytes:
        """`entry_json` of these entries as a JSON array (call with the data's lock held)."""
        key = frozenset(fields) if fields is not None else None
        cache = self._serialised.get(key)
        if cache is None:
            cache = self._serialised[key] = {}
        found = cache.get
        parts = [found(gid) or self._serialise(cache, key, gid) for gid in gids]
        return b"[" + b",".join(parts) + b"]"

    def _serialise(self, cache: dict[str, bytes], key: frozenset[str] | None, gid: str) -> bytes:
        text = cache[gid] = orjson.dumps(entry_json(self.data, self.data.entries[gid], key))
        return text


def category_json(category: Category) -> dict[str, Any]:
    return {"gid": category.gid, "resource_type": "time_tracking_category",
            "name": category.name, "color": category.color, "is_archived": category.is_archived}


def timesheet_json(data: Dataset, sheet: Timesheet, lower_case: bool = False) -> dict[str, Any]:
    status = sheet.approval_status.lower() if lower_case else sheet.approval_status
    return {"gid": sheet.gid, "resource_type": "timesheet_approval_status",
            "user": {"gid": sheet.user_gid, "resource_type": "user",
                     "name": data.users.get(sheet.user_gid)},
            "start_date": sheet.start_date.isoformat(), "end_date": sheet.end_date.isoformat(),
            "approval_status": status}


def rate_json(data: Dataset, rate: Rate) -> dict[str, Any]:
    if rate.resource_gid in data.users:
        resource = {"gid": rate.resource_gid, "resource_type": "user",
                    "name": data.users[rate.resource_gid]}
    else:
        resource = {"gid": rate.resource_gid, "resource_type": "placeholder",
                    "name": data.placeholders.get(rate.resource_gid)}
    return {"gid": rate.gid, "resource_type": "rate",
            "parent": {"gid": rate.parent_gid, "resource_type": "project",
                       "name": data.projects.get(rate.parent_gid)},
            "resource": resource, "rate": rate.rate, "currency_code": rate.currency_code}
