"""`GET /time_tracking_categories?workspace=G[&is_archived=true]`: the workspace's
categories, by pages. The default lists those not archived; `is_archived=true` lists the
archived ones (and `false` the others, as the default). A 403 without the Timesheets &
Budgets add-on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etl.simulator.render import category_json
from etl.simulator.responses import Answer, Refusal, checked_gid
from etl.simulator.routes.paging import page_of

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

ENDPOINT = "/time_tracking_categories"
NO_ADDON = ("Forbidden: time tracking categories are part of the Timesheets & Budgets add-on, "
            "which this workspace does not have.")


def listing(sim: AsanaSimulator, params: dict[str, str]) -> Answer:
    if not sim.addon:
        raise Refusal(403, NO_ADDON)
    data = sim.dataset
    checked_gid(sim, params, "workspace", (data.workspace_gid,))
    archived = params.get("is_archived", "false").lower()
    if archived not in ("true", "false"):
        raise Refusal(400, f"is_archived: Not a boolean: {params['is_archived']}")
    with data.lock:
        found = [c for c in data.categories.values() if c.is_archived == (archived == "true")]
        return page_of(sim, ENDPOINT, params, found, category_json)
