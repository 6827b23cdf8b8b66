"""Pagination: where one listing stands, and proof that it moves on.

`next_page.offset` in, `offset`/`limit` out, stop on a null `next_page`; a listing that
would never end (an offset it was given before, or page after page of nothing new)
fails instead of holding its run for good.
"""

from __future__ import annotations

import bisect
import operator
from array import array
from collections.abc import Mapping
from typing import Any

from etl.errors import RequestRejectedError


#: Pages in a row, each with a page after it, that may bring no entry the listing has not
#: had before the listing fails: a server that hands out new offsets over old entries (or
#: none) would hold it for good. One such page can happen (entries made ahead of the
#: offset shift the rest by a page); five in a row do not.
MAX_STALE_PAGES = 5


class Pagination:
    """Where one listing stands: its query, the offset to send next, and whether it has
    ended. An offset is only valid for the query that produced it, so the query never
    changes.

    It also keeps what proves the listing moves on: the offsets it was given and the gids
    of its entries. A restarted listing (its offset expired) is a new Pagination: it reads
    its pages again, so none of theirs counts against it.
    """

    def __init__(self, path: str, params: Mapping[str, Any], page_size: int) -> None:
        self.path = path
        self.params = dict(params, limit=page_size)
        self.offset: str | None = None
        self.number = 0  # pages fetched so far
        self.done = False
        self._offsets: set[str] = set()  # offsets sent, but the one in hand
        self._gids = _Gids()
        self._stale = 0  # pages in a row that brought no new entry

    def query(self) -> dict[str, Any]:
        """The parameters of the next request."""
        if self.offset is None:
            return self.params
        return {**self.params, "offset": self.offset}

    def advance(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one answer: its entries, and the offset that follows (if any).

        Raises:
            RequestRejectedError: the answer has no `data` list, or the listing would
                never end: an offset it was given before (a loop), or `MAX_STALE_PAGES`
                pages in a row with nothing new.
        """
        data = body.get("data")
        if not isinstance(data, list):
            raise RequestRejectedError(f"page {self.number + 1} of the listing has no `data` list")
        self.number += 1
        next_page = body.get("next_page")
        offset = next_page.get("offset") if isinstance(next_page, dict) else None
        if not offset:
            self.done = True
            return data
        if not isinstance(offset, str):
            raise RequestRejectedError(f"Asana returned a next_page offset that is not a string "
                                       f"(page {self.number})")
        if offset in self._offsets or offset == self.offset:
            raise RequestRejectedError(f"Asana returned offset {_short(offset)} twice in this "
                                       f"listing (page {self.number}): the listing would loop")
        self._count_stale(data)
        if self.offset is not None:
            self._offsets.add(self.offset)
        self.offset = offset
        return data

    def _count_stale(self, data: list[Any]) -> None:
        self._stale = 0 if self._gids.add_page(data) else self._stale + 1
        if self._stale == MAX_STALE_PAGES:
            raise RequestRejectedError(f"{MAX_STALE_PAGES} pages in a row brought no new entry "
                                       f"(page {self.number}): the listing would not end")


def _short(offset: str) -> str:
    """An offset for a message: its start is enough to tell two apart."""
    return repr(offset if len(offset) <= 24 else offset[:20] + "...")


class _Gids:
    """The gids a listing has had, in about 9 bytes each: a listing can hold a million
    entries, whose gids as strings in a set would take 100 bytes each, as ints 65.

    The latest go into a set; every `CHUNK` of them are frozen into a sorted array of
    64-bit ints, searched by bisection. A page is looked up only up to its first new
    entry, so a page of new entries costs one lookup.
    """

    CHUNK = 1 << 13

    def __init__(self) -> None:
        self._recent: set[int] = set()
        self._frozen: list[array[int]] = []

    def add_page(self, data: list[Any]) -> bool:
        """Take in a page's gids; whether any was new to the listing."""
        keys = _gid_keys(data)
        new = not all(map(self._had, keys))
        self._recent.update(keys)
        if len(self._recent) >= self.CHUNK:
            self._frozen.append(array("q", sorted(self._recent)))
            self._recent = set()
        return new

    def _had(self, key: int) -> bool:
        if key in self._recent:
            return True
        for gids in self._frozen:
            if gids[0] <= key <= gids[-1] and gids[bisect.bisect_left(gids, key)] == key:
                return True
        return False


_GID = operator.itemgetter("gid")
_INT64 = range(-(1 << 63), 1 << 63)


def _gid_keys(data: list[Any]) -> list[int]:
    """A 64-bit int for the gid of each entry of a page: the gid itself (gids are strings
    of digits) in C at one go, else entry by entry (see `_gid_key`)."""
    try:
        keys = list(map(int, map(_GID, data)))
    except (KeyError, TypeError, ValueError, OverflowError):
        keys = None
    if keys is None or (keys and not (min(keys) in _INT64 and max(keys) in _INT64)):
        keys = [key for key in map(_gid_key, data) if key is not None]
    return keys


def _gid_key(entry: Any) -> int | None:
    """The gid as an int, a hash of it if it is not a string of digits that fits, or None
    without a string gid (such an entry is rejected, and brings nothing)."""
    gid = entry.get("gid") if isinstance(entry, dict) else None
    if not isinstance(gid, str):
        return None
    if gid.isdecimal() and len(gid) <= 18:
        return int(gid)
    return hash(gid)

