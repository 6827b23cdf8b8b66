"""A simulated Asana on loopback: a real HTTP server serving the time tracking endpoints.

It backs `asana-etl demo`, the tests and the benchmarks. The dataset is generated
deterministically from a seed, shaped like real data: users, projects, portfolios
holding projects, tasks and entries, some attributed to no project, with Unicode, quotes
and very long names; a few people log most of the hours (the busiest user logs ten times
what the quietest does); entries are made on or a little after the day they are for
(some ahead of it), and gids grow in the order entries are made. It can be edited while
the server runs. The server behaves like the API described in `shared/asana/`: bearer
auth, `limit` 1–100, the `entered_on_start_date`/`entered_on_end_date` filters (inclusive,
or exclusive with `exclusive_bounds`; a workspace needs one), opaque offsets bound to
their query, `next_page: null` at the end, Asana's error bodies, and faults on demand
(429 with Retry-After, 5xx, HTML error pages, connection resets, truncated bodies,
expired offsets, and listings that would never end: offsets that loop, pages of nothing
new, answers sent a byte at a time).
"""

from __future__ import annotations


from __future__ import annotations

import bisect
import collections
import datetime as dt
import hashlib
import itertools
import math
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

# Names that break naive code: quotes, accents, CJK, right-to-left, emoji, very long.
_TRICKY_NAMES = [
    'Zoë "Zed" Ångström',
    "Seán O'Brien",
    "李小龙",
    "Ἀριστοτέλης",
    "שׂרה כהן",
    "Renée 🚀 Dupont",
    "Robert'); DROP TABLE time_tracking_entries;--",
    "back\\slash & <tags>",
]
_FIRST = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances", "Edsger", "Hedy"]
_LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Allen"]
_PROJECT_WORDS = ["Website", "Launch", "Migration", "Audit", "Onboarding", "Roadmap", "Support"]


def user_weights(users: int) -> list[float]:
    """How much each user logs, relative to the others: a power law from 10 down to 1
    (real data is skewed: a few people log most of the hours)."""
    if users < 2:
        return [1.0] * users
    exponent = math.log(10) / math.log(users)
    return [10 * (rank + 1) ** -exponent for rank in range(users)]


def _lag(rng: random.Random) -> int:
    """Days between an entry's day and the day it is made: most the same day, some a few
    days later, a few up to two weeks ahead (negative)."""
    draw = rng.random()
    if draw < 0.6:
        return 0
    if draw < 0.9:
        return rng.randint(1, 3)
    if draw < 0.98:
        return rng.randint(4, 30)
    return -rng.randint(1, 14)


def long_name(seed: int, length: int = 300) -> str:
    base = f"Very long name {seed} — ünïcödé “quoted” 'single' 名前 "
    return (base * (length // len(base) + 1))[:length]


@dataclass
class Entry:
    gid: str
    task_gid: str
    user_gid: str
    attributable_to: str | None
    duration_minutes: int
    entered_on: dt.date


@dataclass
class Dataset:
    """Everything the simulated Asana knows. Mutate it through its methods (thread-safe)."""

    workspace_gid: str
    users: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)
    portfolios: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    tasks: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    #: the order listings come in: "made" (by gid, the order entries were made in) or
    #: "shuffled" (an order unrelated to dates or gids, fixed per entry)
    order: str = "made"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _next_gid: Iterator[int] = field(default_factory=lambda: itertools.count(1_200_000_000_000_001))
    _cache: dict[tuple, Any] = field(default_factory=dict, repr=False)
    #: entries as JSON text, by the `opt_fields` asked for: serialising each entry anew
    #: for every page made the simulator, not the tool, the benchmarks' bottleneck
    _serialised: dict[frozenset[str] | None, dict[str, bytes]] = field(default_factory=dict,
                                                                       repr=False)

    def new_gid(self) -> str:
        return str(next(self._next_gid))

    @classmethod
    def generate(
        cls,
        seed: int = 1,
        *,
        entries: int = 1000,
        users: int = 12,
        projects: int = 10,
        portfolios: int = 3,
        tasks: int = 60,
        start: dt.date = dt.date(2026, 1, 1),
        days: int = 300,
        order: str = "made",
    ) -> Dataset:
        """A deterministic dataset: the same arguments always give the same data.

        Entries fall on `days` days from `start`. Users are skewed: user weights fall
        from 10 to 1 along a power law, in an order unrelated to their gids. Each entry
        is made on its day (most), a few days after (some), or up to two weeks ahead (a
        few), and gids are handed out in the order entries are made.
        """
        rng = random.Random(seed)
        data = cls(workspace_gid="1100000000000001", order=order)
        for i in range(users):
            if i < len(_TRICKY_NAMES):
                name = _TRICKY_NAMES[i]
            elif i == len(_TRICKY_NAMES):
                name = long_name(i)
            else:
                name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {i}"
            data.users[data.new_gid()] = name
        for i in range(projects):
            name = long_name(1000 + i, 310) if i == 1 else f"{rng.choice(_PROJECT_WORDS)} {i} “Q{i % 4 + 1}”"
            data.projects[data.new_gid()] = name
        project_gids = list(data.projects)
        for i in range(portfolios):
            held = rng.sample(project_gids, k=min(len(project_gids), max(1, len(project_gids) // 3)))
            data.portfolios[data.new_gid()] = (f"Portfolio {i} – ‘FY{26 + i}’", held)
        for i in range(tasks):
            # about one task in eight belongs to no project: its entries have attributable_to null
            project = None if i % 8 == 7 else rng.choice(project_gids)
            data.tasks[data.new_gid()] = (f"Task {i}", project)
        task_gids, user_gids = list(data.tasks), list(data.users)
        weights = user_weights(len(user_gids))
        rng.shuffle(weights)
        made = []
        for _ in range(entries):
            task = rng.choice(task_gids)
            day = start + dt.timedelta(days=rng.randrange(days))
            made.append((day + dt.timedelta(days=_lag(rng)), rng.random(), task,
                         rng.choices(user_gids, weights)[0], rng.randint(1, 480), day))
        made.sort()  # gids grow with the moment an entry is made
        for _, _, task, user, minutes, day in made:
            data._add(Entry(data.new_gid(), task, user, data.tasks[task][1], minutes, day))
        return data

    def _add(self, entry: Entry) -> None:
        self.entries[entry.gid] = entry
        self._changed()

    def _changed(self) -> None:
        self._cache.clear()
        self._serialised.clear()

    # --- edits, as a user of Asana would make them ------------------------------------

    def add_entry(self, task_gid: str, user_gid: str, duration_minutes: int, entered_on: dt.date,
                  gid: str | None = None) -> Entry:
        with self.lock:
            entry = Entry(gid or self.new_gid(), task_gid, user_gid, self.tasks[task_gid][1],
                          duration_minutes, entered_on)
            self._add(entry)
            return entry

    def edit_entry(self, gid: str, **changes: Any) -> None:
        with self.lock:
            entry = self.entries[gid]
            for key, value in changes.items():
                if not hasattr(entry, key):
                    raise KeyError(key)
                setattr(entry, key, value)
            self._changed()

    def delete_entry(self, gid: str) -> None:
        with self.lock:
            del self.entries[gid]
            self._changed()

    def rename_user(self, gid: str, name: str) -> None:
        with self.lock:
            self.users[gid] = name
            self._serialised.clear()

    def rename_project(self, gid: str, name: str) -> None:
        with self.lock:
            self.projects[gid] = name
            self._serialised.clear()

    # --- reading, as the API does ----------------------------------------------------

    def entry_json(self, entry: Entry, fields: set[str] | None) -> dict[str, Any]:
        """The entry as the API shows it with these `opt_fields` (None: the default)."""
        full: dict[str, Any] = {"gid": entry.gid, "resource_type": "time_tracking_entry"}
        wanted = fields if fields is not None else {"duration_minutes"}

        def compact(kind: str, gid: str | None, names: dict[str, str], prefix: str) -> Any:
            if gid is None:
                return None
            obj: dict[str, Any] = {"gid": gid, "resource_type": kind}
            if f"{prefix}.name" in wanted:
                obj["name"] = names[gid]
            return obj

        if "duration_minutes" in wanted:
            full["duration_minutes"] = entry.duration_minutes
        if "entered_on" in wanted:
            full["entered_on"] = entry.entered_on.isoformat()
        if wanted & {"attributable_to", "attributable_to.name"}:
            full["attributable_to"] = compact("project", entry.attributable_to, self.projects, "attributable_to")
        if wanted & {"created_by", "created_by.name"}:
            full["created_by"] = compact("user", entry.user_gid, self.users, "created_by")
        if wanted & {"task", "task.name"}:
            task = {"gid": entry.task_gid, "resource_type": "task"}
            if "task.name" in wanted:
                task["name"] = self.tasks[entry.task_gid][0]
            full["task"] = task
        return full

    def entries_json(self, gids: list[str], fields: set[str] | None) -> bytes:
        """`entry_json` of these entries as a JSON array (call with `lock` held)."""
        key = frozenset(fields) if fields is not None else None
        cache = self._serialised.setdefault(key, {})
        parts = []
        for gid in gids:
            text = cache.get(gid)
            if text is None:
                text = cache[gid] = orjson.dumps(self.entry_json(self.entries[gid], fields))
            parts.append(text)
        return b"[" + b",".join(parts) + b"]"

    def _by(self, attribute: str) -> dict[str | None, list[str]]:
        """Entry gids by the value of one attribute (built once, until the data changes):
        one pass over the entries for all scopes, not one per scope."""
        index = self._cache.get(("by", attribute))
        if index is None:
            built: dict[str | None, list[str]] = collections.defaultdict(list)
            for gid, entry in self.entries.items():
                built[getattr(entry, attribute)].append(gid)
            index = self._cache[("by", attribute)] = dict(built)
        return index  # type: ignore[return-value]

    def matching(self, filters: tuple[tuple[str, str], ...], exclusive: bool = False) -> list[str]:
        """Gids of the entries that pass every filter, in a stable order (see `order`).
        Date bounds are inclusive, or with `exclusive` exclusive."""
        with self.lock:
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
            key = int if self.order == "made" else _shuffled
            found = sorted(gids[lo:hi], key=key) if lo < hi else []
            self._cache[(filters, exclusive)] = found
            return found

    def _by_day(self, scope: tuple[tuple[str, str], ...]) -> tuple[list[dt.date], list[str]]:
        """The entries a scope filter passes, by day (the days, and the gids in the same
        order), built once until the data changes: a listing of a window then costs what
        it returns, not a pass over the scope (a split workspace asks for many)."""
        cached = self._cache.get(("by_day", scope))
        if cached is not None:
            return cached
        candidates: list[str] | None = None  # the workspace: every entry
        for name, gid in scope:
            if name == "user":
                candidates = self._by("user_gid").get(gid, [])
            elif name == "attributable_to":
                candidates = self._by("attributable_to").get(gid, [])
            elif name == "task":
                candidates = self._by("task_gid").get(gid, [])
            elif name == "portfolio":
                by_project = self._by("attributable_to")
                candidates = [g for p in set(self.portfolios[gid][1])
                              for g in by_project.get(p, [])]
        if candidates is None:
            candidates = list(self.entries)
        dated = sorted((self.entries[g].entered_on, g) for g in candidates)
        index = self._cache[("by_day", scope)] = ([d for d, _ in dated], [g for _, g in dated])
        return index


def _shuffled(gid: str) -> bytes:
    """A fixed position for an entry, unrelated to its gid or its day."""
    return hashlib.blake2b(gid.encode(), digest_size=8).digest()
