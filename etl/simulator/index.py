"""Which entries a listing returns: entries by scope filter and day, built once and kept
until the entries change (a listing of a window then costs what it returns)."""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl.simulator.dataset import Dataset

#: The entry attributes the index depends on: an edit of any other leaves it valid.
INDEXED = frozenset({"gid", "task_gid", "user_gid", "attributable_to", "entered_on"})


class EntryIndex:
    """Entry gids by scope filter and day, for one `Dataset` (read with its lock held)."""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self._cache: dict[tuple, Any] = {}

    def clear(self) -> None:
        self._cache.clear()

    def matching(self, filters: tuple[tuple[str, str], ...], exclusive: bool = False) -> list[str]:
        """Gids of the entries that pass every filter, in a stable order (see
        `Dataset.order`). Date bounds are inclusive, or with `exclusive` exclusive."""
        cached = self._cache.get((filters, exclusive))
        if cached is not None:
            return cached
        scope = tuple((n, g) for n, g in filters if not n.startswith("entered_on"))
        days, gids = self._by_day(scope)
        lo, hi = 0, len(days)
        for name, value in filters:
            if name == "entered_on_start_date":
                day = dt.date.fromisoformat(value) + dt.timedelta(days=exclusive)
                lo = max(lo, bisect.bisect_left(days, day))
            elif name == "entered_on_end_date":
                day = dt.date.fromisoformat(value) - dt.timedelta(days=exclusive)
                hi = min(hi, bisect.bisect_right(days, day))
        key = int if self.data.order == "made" else shuffled
        found = sorted(gids[lo:hi], key=key) if lo < hi else []
        self._cache[(filters, exclusive)] = found
        return found

    def by(self, attribute: str) -> dict[str | None, list[str]]:
        """Entry gids by the value of one attribute (built once, until the data changes):
        one pass over the entries for all scopes, not one per scope."""
        index = self._cache.get(("by", attribute))
        if index is None:
            built: dict[str | None, list[str]] = collections.defaultdict(list)
            for gid, entry in self.data.entries.items():
                built[getattr(entry, attribute)].append(gid)
            index = self._cache[("by", attribute)] = dict(built)
        return index  # type: ignore[no-any-return]

    def _by_day(self, scope: tuple[tuple[str, str], ...]) -> tuple[list[dt.date], list[str]]:
        """The entries a scope filter passes, by day (the days, and the gids in the same
        order), built once until the data changes: a split workspace asks for many windows."""
        cached = self._cache.get(("by_day", scope))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        data = self.data
        candidates: list[str] | None = None  # the workspace: every entry
        for name, gid in scope:
            if name == "user":
                candidates = self.by("user_gid").get(gid, [])
            elif name == "attributable_to":
                candidates = self.by("attributable_to").get(gid, [])
            elif name == "task":
                candidates = self.by("task_gid").get(gid, [])
            elif name == "portfolio":
                by_project = self.by("attributable_to")
                candidates = [g for p in set(data.portfolios[gid][1])
                              for g in by_project.get(p, [])]
        if candidates is None:
            candidates = list(data.entries)
        dated = sorted((data.entries[g].entered_on, g) for g in candidates)
        index = self._cache[("by_day", scope)] = ([d for d, _ in dated], [g for _, g in dated])
        return index


def shuffled(gid: str) -> bytes:
    """A fixed position for an entry, unrelated to its gid or its day."""
    return hashlib.blake2b(gid.encode(), digest_size=8).digest()
