"""Pagination: where one listing stands, and proof that it moves on.

`next_page.offset` in, `offset`/`limit` out, stop on a null `next_page`; a listing that
would never end (an offset it was given before, or page after page of nothing new)
fails instead of holding its run for good. What it keeps to tell is bounded, however
long the listing: about 200 KB at most (see `_Gids`, `OFFSETS_KEPT`).
"""

from __future__ import annotations

import bisect
import collections
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
#: Beyond what a listing keeps exactly (see `_Gids`): gids of its sample had again, with
#: none new, since the last page that brought a new entry, after which it fails (once
#: `MAX_STALE_PAGES` pages have passed too).
PROOF_GIDS = 64
#: The latest offsets a listing remembers: one given again among them is a loop at once;
#: a longer loop brings back entries the listing has had, and fails as pages of nothing
#: new.
OFFSETS_KEPT = 64


class Pagination:
    """Where one listing stands: its query, the offset to send next, and whether it has
    ended. An offset is only valid for the query that produced it, so the query never
    changes.

    It also keeps what proves the listing moves on: its latest offsets and what it knows
    of the gids of its entries (`_Gids`), in a bounded space. A restarted listing (its
    offset expired) is a new Pagination: it reads its pages again, so none of theirs
    counts against it.
    """

    def __init__(self, path: str, params: Mapping[str, Any], page_size: int) -> None:
        self.path = path
        self.params = dict(params, limit=page_size)
        self.offset: str | None = None
        self.number = 0  # pages fetched so far
        self.done = False
        self._offsets = _Latest(OFFSETS_KEPT)  # offsets sent, but the one in hand
        self._gids = _Gids()
        self._stale = 0  # pages in a row that brought no new entry
        self._since_new = 0  # pages since the last that brought one
        self._proof = 0  # gids of `_Gids`' sample it had again since then

    def query(self) -> dict[str, Any]:
        """The parameters of the next request."""
        if self.offset is None:
            return self.params
        return {**self.params, "offset": self.offset}

    def advance(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one answer: its entries, and the offset that follows (if any).

        Raises:
            RequestRejectedError: the answer has no `data` list, or the listing would
                never end: an offset it was given lately (a loop), or `MAX_STALE_PAGES`
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
        new, had = self._gids.add_page(data)
        if new:
            self._stale = self._since_new = self._proof = 0
            return
        self._stale = 0 if new is None else self._stale + 1
        self._since_new += 1
        self._proof += had
        if self._stale == MAX_STALE_PAGES or (self._proof >= PROOF_GIDS
                                              and self._since_new >= MAX_STALE_PAGES):
            raise RequestRejectedError(f"{self._since_new} pages in a row brought no new entry "
                                       f"(page {self.number}): the listing would not end")


def _short(offset: str) -> str:
    """An offset for a message: its start is enough to tell two apart."""
    return repr(offset if len(offset) <= 24 else offset[:20] + "...")


class _Latest:
    """The latest `size` values added, for `in`."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[str] = collections.deque()
        self._values: set[str] = set()
        self._size = size

    def __contains__(self, value: str) -> bool:
        return value in self._values

    def add(self, value: str) -> None:
        if value in self._values:
            return
        self._order.append(value)
        self._values.add(value)
        if len(self._order) > self._size:
            self._values.discard(self._order.popleft())


#: An odd 64-bit multiplier (2^64 / the golden ratio): a gid times it, modulo 2^64, has
#: high bits that look random whatever pattern the gids follow.
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_ALL = 1 << 64


class _Gids:
    """What a listing knows of the gids it has had, in a bounded space (about 200 KB).

    The latest `WINDOW` to `2 * WINDOW` gids are kept exactly, in two sets. Older ones go
    into sorted arrays of 64-bit ints (8 bytes each), all of them up to `KEPT`; beyond
    that a sample: the gids whose mixed value (`_MIX`) falls under a limit, halved each
    time the arrays would hold more than `KEPT`. So whether a gid was had is known for
    the gids of the window and of the sample, and not for the others. A page brings
    something new if it has a gid of the sample the listing never had; nothing new if
    every gid on it was had (all known); else it cannot be told.

    Up to `KEPT` gids this is an exact set: `MAX_STALE_PAGES` pages of nothing new fail
    the listing. Beyond, pages that go back over older entries cannot be told, but the
    gids of the sample on them can: `PROOF_GIDS` of them had again, and none new, fail
    the listing all the same (with a sample of a listing's 1,000,000 entries, one in 128
    to 256, after 40 to 80 pages of 100 of old entries; of 10,000,000, after about a
    thousand). A listing that moves on brings new gids into the sample long before: one
    is failed for want of memory only if nearly all its entries are old ones again (64
    in a row of the sample), which is a listing that would barely end anyway.
    """

    WINDOW = 1024
    KEPT = 8192
    #: sorted arrays kept before they are merged into one
    ARRAYS = 16

    def __init__(self) -> None:
        self._recent: set[int] = set()
        self._previous: set[int] = set()
        self._older: list[array[int]] = []
        self._kept = 0  # gids in the arrays
        self._limit = _ALL  # a gid is in the sample if its mixed value is below it

    def add_page(self, data: list[Any]) -> tuple[bool | None, int]:
        """Take in a page's gids: whether one was new to the listing (None: cannot tell),
        and how many of its gids beyond the window were had, known by the sample."""
        keys = _gid_keys(data)
        verdict = self._verdict(keys)
        self._recent.update(keys)
        if len(self._recent) >= self.WINDOW:
            self._age()
        return verdict

    def sizes(self) -> tuple[int, int]:
        """Gids kept exactly (the window), gids kept in the arrays: what it holds."""
        return len(self._recent) + len(self._previous), self._kept

    def _verdict(self, keys: list[int]) -> tuple[bool | None, int]:
        recent, previous, limit = self._recent, self._previous, self._limit
        had = 0  # gids of the sample, outside the window, that it had
        untold = False  # a gid outside both
        for key in keys:
            if key in recent or key in previous:
                continue
            if (key * _MIX) & _MASK < limit:
                if not self._had(key):
                    return True, 0
                had += 1
            else:
                untold = True
        return (None if untold else False), had

    def _had(self, key: int) -> bool:
        for gids in self._older:
            if gids[0] <= key <= gids[-1] and gids[bisect.bisect_left(gids, key)] == key:
                return True
        return False

    def _age(self) -> None:
        """The window moves on: its older half goes into the arrays (what of it is in
        the sample), which keep no more than `KEPT`."""
        limit = self._limit
        aged = sorted(self._previous if limit == _ALL else
                      [key for key in self._previous if (key * _MIX) & _MASK < limit])
        self._previous, self._recent = self._recent, set()
        if aged:
            self._older.append(array("q", aged))
            self._kept += len(aged)
        if self._kept > self.KEPT or len(self._older) > self.ARRAYS:
            while self._kept > self.KEPT:
                self._limit >>= 1
                self._kept = sum(1 for gids in self._older for key in gids
                                 if (key * _MIX) & _MASK < self._limit)
            limit = self._limit
            merged = sorted(key for gids in self._older for key in gids
                            if (key * _MIX) & _MASK < limit)
            self._older = [array("q", merged)] if merged else []
            self._kept = len(merged)


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
