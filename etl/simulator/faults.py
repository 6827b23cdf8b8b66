"""Faults the simulated Asana answers with on demand, instead of the real answer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from etl.simulator.offsets import query_key


@dataclass
class Fault:
    """An answer to give instead of the real one.

    kind: an HTTP status (429, 500, 502, ...), or "reset" (close the connection without
    answering), "truncate" (a 200 whose JSON body is cut short), "drip" (the real answer,
    headers and all, one byte every `seconds`), "drip_body" (its headers at once, then
    its body one byte every `seconds`), or one of these, only on requests that carry an
    offset (`OFFSET_FAULTS`):
      "expire_offset": a 400 naming `offset`;
      "cycle_offset": the real page, whose `next_page` points back to the first offset
        the listing was given (A→B→A): the first offset of each listing it sees is
        remembered and answered as usual;
      "repeat_page": the listing's first page again, with a new offset to the same place;
      "empty_page": no entries, with a new offset to the same place.
    None of the last three ends a listing; after the last two, it goes on where it was.
    """

    kind: int | str
    times: int = 1
    retry_after: float | None = None
    match: Callable[[str, dict[str, str]], bool] = lambda path, params: True
    seconds: float = 0.0
    #: "cycle_offset": the first offset seen of each listing, by query
    first_offsets: dict[str, str] = field(default_factory=dict)


#: The faults that only answer requests carrying an offset.
OFFSET_FAULTS = ("expire_offset", "cycle_offset", "repeat_page", "empty_page")


class FaultQueue:
    """The faults asked for, each answering the requests it matches until used up."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, path: str, params: dict[str, str]) -> Fault | None:
        """The first fault that answers this request, counted as used once, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in OFFSET_FAULTS and "offset" not in params:
                    continue
                if fault.times > 0 and fault.match(path, params):
                    if fault.kind == "cycle_offset" and not _cycles(fault, path, params):
                        continue
                    fault.times -= 1
                    return fault
        return None


def _cycles(fault: Fault, path: str, params: dict[str, str]) -> bool:
    """Whether a "cycle_offset" fault answers this request: not the first with an offset
    of its listing, whose offset it remembers to point back to."""
    first = fault.first_offsets.setdefault(query_key(params, path), params["offset"])
    return params["offset"] != first
