"""The simulated Asana's endpoints, one module each, and `answer`, which sends a request
to its endpoint (no faults, no authentication: the handler's business)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from etl.simulator.responses import API, Answer, Refusal, error
from etl.simulator.routes import categories, entries, rates, timesheets

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

#: Listings by their path below the API's.
LISTINGS: dict[str, Callable[[AsanaSimulator, dict[str, str]], Answer]] = {
    entries.ENDPOINT: entries.listing,
    categories.ENDPOINT: categories.listing,
    timesheets.ENDPOINT: timesheets.listing,
    rates.ENDPOINT: rates.listing,
}
_ONE_ENTRY = API + entries.ENDPOINT + "/"


def answer(sim: AsanaSimulator, path: str, params: dict[str, str]) -> Answer:
    """The endpoint's real answer to a GET of `path` (the whole path, `/api/1.0/...`)."""
    try:
        if path.startswith(_ONE_ENTRY):
            return entries.one(sim, path[len(_ONE_ENTRY):], params)
        route = LISTINGS.get(path[len(API):]) if path.startswith(API) else None
        if route is None:
            return error(404, "Not found")
        return route(sim, params)
    except Refusal as refusal:
        return refusal.answer
