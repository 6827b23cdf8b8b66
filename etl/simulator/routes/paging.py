"""A page of a listing of workspace objects (categories, timesheets, rates): Asana's
`limit`/`offset`/`next_page`, as the entries' listing pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from etl.simulator.responses import (
    TOO_LARGE,
    UNPAGED_MAX,
    Answer,
    checked_paging,
    error,
    page_after,
)

if TYPE_CHECKING:
    from etl.simulator.server import AsanaSimulator

T = TypeVar("T")


def page_of(sim: AsanaSimulator, endpoint: str, params: dict[str, str], items: Sequence[T],
            show: Callable[[T], Any]) -> Answer:
    """The page of `items` that `params` ask for, each shown by `show`: all of them
    without a `limit` (no `next_page` then), else a page and where the next starts."""
    limit, position = checked_paging(sim, endpoint, params)
    if limit is None:
        if len(items) > UNPAGED_MAX:
            return error(400, TOO_LARGE)
        return 200, orjson.dumps({"data": [show(item) for item in items]}), {}
    end = position + limit
    body = {"data": [show(item) for item in items[position:end]],
            "next_page": page_after(sim, endpoint, params, end, len(items))}
    return 200, orjson.dumps(body), {}
