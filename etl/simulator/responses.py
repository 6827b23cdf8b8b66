"""The pieces of the simulated Asana's answers: an answer's type, Asana's error bodies, a
listing's `next_page`, and the checks of a request's parameters that every endpoint shares."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

#: An answer: status, body, extra headers.
Answer = tuple[int, bytes, dict[str, str]]

#: Where the API lives on the server; endpoints are paths below it.
API = "/api/1.0"
HELP = ("For more information on API status codes and how to handle them, read the docs on "
        "errors: https://developers.asana.com/docs/errors")


class Refusal(Exception):
    """An error answer, raised from deep in a route to be sent as it is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.answer = error(status, message)


def json_answer(status: int, body: Any) -> Answer:
    return status, orjson.dumps(body), {}


def error(status: int, message: str) -> Answer:
    """Asana's error body: `{"errors": [{"message", "help"}]}`, with a `phrase` on 5xx."""
    detail: dict[str, str] = {"message": message, "help": HELP}
    if status >= 500:
        detail["phrase"] = "6 sad squid snuggle softly"
    return json_answer(status, {"errors": [detail]})


def next_page(sim: AsanaSimulator, endpoint: str, params: dict[str, str], offset: str
              ) -> dict[str, str]:
    """A listing's `next_page` object, to go on from `offset` (`endpoint`: the path below
    the API's, e.g. `/time_tracking_entries`)."""
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "offset")
    path = f"{endpoint}?{query}&offset={offset}"
    return {"offset": offset, "path": path, "uri": sim.base_url + path}


def page_after(sim: AsanaSimulator, endpoint: str, params: dict[str, str], end: int,
               total: int) -> dict[str, str] | None:
    """The `next_page` of a page that ends at `end` of `total` results (None: the last)."""
    if end >= total:
        return None
    return next_page(sim, endpoint, params, sim.make_offset(params, end, endpoint))


def checked_gid(sim: AsanaSimulator, params: dict[str, str], name: str, known: Any,
                required: bool = True) -> str | None:
    """The gid in parameter `name`, checked as Asana does: a 400 if missing (when
    `required`) or not a gid, a 403 if forbidden, a 404 if not in `known`."""
    gid = params.get(name)
    if gid is None:
        if required:
            raise Refusal(400, f"{name}: Missing input")
        return None
    if not gid.isdigit():
        raise Refusal(400, f"{name}: Not a valid gid: {gid}")
    if gid in sim.forbidden:
        raise Refusal(403, f"{name}: Forbidden")
    if gid not in known:
        raise Refusal(404, f"{name}: Unknown object: {gid}")
    return gid


def checked_date(params: dict[str, str], name: str) -> dt.date | None:
    if name not in params:
        return None
    try:
        return dt.date.fromisoformat(params[name])
    except ValueError:
        raise Refusal(400, f"{name}: Not a valid date: {params[name]}") from None


def checked_paging(sim: AsanaSimulator, endpoint: str, params: dict[str, str]
                   ) -> tuple[int | None, int]:
    """A listing's `limit` (None: none asked) and the position its `offset` stands for."""
    limit = None
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise Refusal(400, "limit: Must be between 1 and 100")
    position = 0
    if "offset" in params:
        if limit is None:
            raise Refusal(400, "offset: An offset requires a limit")
        read = sim.read_offset(params, endpoint)
        if read is None:
            raise Refusal(400, "offset: Your pagination token has expired or is invalid. "
                               "Please restart your query.")
        position = read
    return limit, position


#: Without a `limit`, a listing answers at most this many (else a 400 asking for pages).
UNPAGED_MAX = 1000
TOO_LARGE = ("The result is too large. You should use pagination (may require specifying a "
             "workspace)!")
