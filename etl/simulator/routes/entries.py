"""`GET /time_tracking_entries` (a scope's entries, compact, by pages) and
`GET /time_tracking_entries/{gid}` (one entry, with every field)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from etl.simulator.render import CATEGORY_FIELDS
from etl.simulator.responses import (
    TOO_LARGE,
    UNPAGED_MAX,
    Answer,
    Refusal,
    checked_date,
    checked_gid,
    checked_paging,
    error,
    page_after,
)

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

ENDPOINT = "/time_tracking_entries"
_FILTERS = ("task", "attributable_to", "portfolio", "user", "workspace")
#: What the list documents in `opt_fields`; what else it does with is `list_extra_fields`.
LIST_FIELDS = frozenset({"gid", "resource_type", "attributable_to", "attributable_to.name",
                         "created_by", "created_by.name", "duration_minutes", "entered_on",
                         *CATEGORY_FIELDS})
#: What the Timesheets & Budgets add-on gives: absent from every answer without it.
ADDON_FIELDS = frozenset({"billable_status", "description", *CATEGORY_FIELDS})


def listing(sim: AsanaSimulator, params: dict[str, str]) -> Answer:
    data = sim.dataset
    filters = [(name, params[name]) for name in _FILTERS if name in params]
    if not filters:
        return error(400, "Must specify exactly one of task, attributable_to, portfolio, "
                          "user or workspace.")
    known = {"task": data.tasks, "attributable_to": data.projects, "portfolio": data.portfolios,
             "user": data.users, "workspace": (data.workspace_gid,)}
    for name, _ in filters:
        checked_gid(sim, params, name, known[name])
    if not sim.ignores_dates:
        for name in ("entered_on_start_date", "entered_on_end_date"):
            if checked_date(params, name) is not None:
                filters.append((name, params[name]))
    if "workspace" in params and not any(name.startswith("entered_on") for name in params):
        return error(400, "workspace: entered_on_start_date or entered_on_end_date is "
                          "required with workspace")
    limit, position = checked_paging(sim, ENDPOINT, params)
    fields = _list_fields(sim, params)
    with data.lock:
        gids = data.matching(tuple(filters), sim.exclusive_bounds)
        if limit is None:
            if len(gids) > UNPAGED_MAX:
                return error(400, TOO_LARGE)
            page, following = gids, None
        else:
            page = gids[position:position + limit]
            following = page_after(sim, ENDPOINT, params, position + limit, len(gids))
        entries = data.entries_json(page, fields)
    body = b'{"data":' + entries
    if limit is not None:
        body += b',"next_page":' + orjson.dumps(following)
    return 200, body + b"}", {}


def one(sim: AsanaSimulator, gid: str, params: dict[str, str]) -> Answer:
    fields = _asked(params)
    if fields is not None and not sim.addon:
        fields -= ADDON_FIELDS
    data = sim.dataset
    with data.lock:
        if gid not in data.entries:
            return error(404, f"time_tracking_entry: Unknown object: {gid}")
        return 200, b'{"data":' + data.entries_json([gid], fields)[1:-1] + b"}", {}


def _asked(params: dict[str, str]) -> set[str] | None:
    return set(params["opt_fields"].split(",")) if params.get("opt_fields") else None


def _list_fields(sim: AsanaSimulator, params: dict[str, str]) -> set[str] | None:
    """The fields a listing shows: those asked, less what the list does not give.
    Beyond its documented fields it ignores, refuses or returns them, as
    `sim.list_extra_fields` says ("partial": returns them but for the add-on's)."""
    fields = _asked(params)
    if fields is None:
        return None
    extra = fields - LIST_FIELDS
    if extra and sim.list_extra_fields == "refuse":
        raise Refusal(400, f"opt_fields: not a field of a time tracking entry listing: "
                           f"{', '.join(sorted(extra))}")
    if extra and sim.list_extra_fields not in ("return", "partial"):
        fields -= extra
    if not sim.addon or sim.list_extra_fields == "partial":
        fields -= ADDON_FIELDS
    return fields
