"""`GET /rates?parent=PROJECT`: the project's hourly rates (of users and placeholders), by
pages, in gid order. A 402 without the Timesheets & Budgets add-on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etl.simulator.render import rate_json
from etl.simulator.responses import Answer, Refusal, checked_gid
from etl.simulator.routes.paging import page_of

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

ENDPOINT = "/rates"
NO_ADDON = ("Payment Required: rates are part of the Timesheets & Budgets add-on, which this "
            "workspace does not have.")


def listing(sim: AsanaSimulator, params: dict[str, str]) -> Answer:
    if not sim.addon:
        raise Refusal(402, NO_ADDON)
    data = sim.dataset
    parent = checked_gid(sim, params, "parent", data.projects)
    with data.lock:
        found = [r for r in data.rates.values() if r.parent_gid == parent]
        return page_of(sim, ENDPOINT, params, found, lambda r: rate_json(data, r))
