"""`GET /timesheet_approval_statuses?workspace=G[&user=U][&from_date=D][&to_date=D]`: one
per user per week (Monday to Sunday), by pages, in week order. `user` and the dates are
optional, as in Asana's reference; the dates keep the weeks that overlap them (inclusive).
The status is upper case, or lower case with `sim.approval_case = "lower"` (as the endpoint
first spoke). A 402 without the Timesheets & Budgets add-on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etl.simulator.render import timesheet_json
from etl.simulator.responses import Answer, Refusal, checked_date, checked_gid
from etl.simulator.routes.paging import page_of

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

ENDPOINT = "/timesheet_approval_statuses"
NO_ADDON = ("Payment Required: timesheets are part of the Timesheets & Budgets add-on, which "
            "this workspace does not have.")


def listing(sim: AsanaSimulator, params: dict[str, str]) -> Answer:
    if not sim.addon:
        raise Refusal(402, NO_ADDON)
    data = sim.dataset
    checked_gid(sim, params, "workspace", (data.workspace_gid,))
    user = checked_gid(sim, params, "user", data.users, required=False)
    since, until = checked_date(params, "from_date"), checked_date(params, "to_date")
    lower = sim.approval_case == "lower"
    with data.lock:
        found = sorted((s for s in data.timesheets.values()
                        if (user is None or s.user_gid == user)
                        and (since is None or s.end_date >= since)
                        and (until is None or s.start_date <= until)),
                       key=lambda s: (s.start_date, s.gid))
        return page_of(sim, ENDPOINT, params, found, lambda s: timesheet_json(data, s, lower))
