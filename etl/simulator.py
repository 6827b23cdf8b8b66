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

import argparse
import base64
import bisect
import collections
import datetime as dt
import hashlib
import hmac
import itertools
import json
import math
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

DEMO_TOKEN = "demo-token"
HELP = "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors"

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


@dataclass
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    status: int | str
    in_flight: int = 0  # requests being handled when this one came, itself included


class AsanaSimulator:
    """Serve a `Dataset` over HTTP on 127.0.0.1.

    Use as a context manager, or call `start()` / `stop()`.

    Attributes:
        token: the only bearer token accepted.
        forbidden: gids whose objects answer 403.
        payment_required: answer every request with 402 (plan without time tracking).
        exclusive_bounds: read `entered_on_start_date` and `entered_on_end_date` as
            exclusive (Asana does not document which it does; inclusive by default).
        ignores_dates: take no notice of those two (a server a run must not split for).
        offset_ttl: seconds an offset stays valid (None: forever).
        latency: seconds to wait before answering each request.
        rate_limit: (requests, seconds): more accepted requests than that in any such
            sliding window are answered 429 with Retry-After (Asana: 1,500 in 60 s; a
            benchmark scales it, e.g. 150 in 6 s).
        max_in_flight: requests handled at once before answering 429 (Asana: 50).
        before_answer: called with (path, params) before each authorised request is
            answered: to change the data mid-listing, or to hold a run in the middle.
    """

    def __init__(self, dataset: Dataset | None = None, *, token: str = DEMO_TOKEN, port: int = 0,
                 latency: float = 0.0, rate_limit: tuple[int, float] | None = None,
                 max_in_flight: int = 50) -> None:
        self.dataset = dataset or Dataset.generate()
        self.token = token
        self.forbidden: set[str] = set()
        self.payment_required = False
        self.exclusive_bounds = False
        self.ignores_dates = False
        self.offset_ttl: float | None = None
        self.latency = latency
        self.rate_limit = rate_limit
        self.max_in_flight = max_in_flight
        self._accepted: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self.before_answer: Callable[[str, dict[str, str]], None] | None = None
        self.requests: list[RequestRecord] = []
        self._first: float | None = None
        self._last: float | None = None
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._secret = hashlib.sha256(f"{id(self)}{time.time()}".encode()).digest()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.simulator = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/1.0"

    def start(self) -> AsanaSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="asana-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> AsanaSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- limits ----------------------------------------------------------------------

    def _admit(self) -> tuple[float | None, int]:
        """Count a request in: None if admitted, else the Retry-After to answer 429 with;
        and how many requests are in hand with it."""
        with self._lock:
            arrived = self._in_flight + 1
            if self._in_flight >= self.max_in_flight:
                return 1.0, arrived
            if self.rate_limit is not None:
                limit, window = self.rate_limit
                now = time.monotonic()
                while self._accepted and self._accepted[0] <= now - window:
                    self._accepted.popleft()
                if len(self._accepted) >= limit:
                    return max(0.01, self._accepted[0] + window - now), arrived
                self._accepted.append(now)
            self._in_flight += 1
            return None, arrived

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # --- faults ----------------------------------------------------------------------

    def add_fault(self, kind: int | str, *, times: int = 1, retry_after: float | None = None,
                  seconds: float = 0.0,
                  when: Callable[[str, dict[str, str]], bool] | None = None) -> Fault:
        """Answer the next `times` matching requests with `kind` instead of the real answer
        (`seconds`: between two bytes of a "drip"). `when` is called with the simulator's
        lock held: it must not call the simulator's methods."""
        fault = Fault(kind, times, retry_after, when or (lambda path, params: True), seconds)
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take_fault(self, path: str, params: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in OFFSET_FAULTS and "offset" not in params:
                    continue
                if fault.times > 0 and fault.match(path, params):
                    if fault.kind == "cycle_offset" and not self._cycles(fault, params):
                        continue
                    fault.times -= 1
                    return fault
        return None

    def _cycles(self, fault: Fault, params: dict[str, str]) -> bool:
        """Whether a "cycle_offset" fault answers this request: not the first with an offset
        of its listing, whose offset it remembers to point back to."""
        first = fault.first_offsets.setdefault(self._query_key(params), params["offset"])
        return params["offset"] != first

    def stats(self) -> dict[str, Any]:
        """Requests answered so far, by status, and the first and last request's time."""
        with self._lock:
            by_status = collections.Counter(str(r.status) for r in self.requests)
            return {"requests": len(self.requests), "by_status": dict(by_status),
                    "first": self._first, "last": self._last}

    def count(self, status: int | str | None = None, **params: str) -> int:
        """How many requests were answered (with `status`, carrying these params)."""
        with self._lock:
            return sum(
                1 for r in self.requests
                if (status is None or r.status == status)
                and all(r.params.get(k) == v for k, v in params.items())
            )

    def _record(self, method: str, path: str, params: dict[str, str], status: int | str,
                in_flight: int = 0) -> None:
        with self._lock:
            self.requests.append(RequestRecord(method, path, params, status, in_flight))
            self._last = time.time()
            if self._first is None:
                self._first = self._last

    # --- offsets ---------------------------------------------------------------------

    def _query_key(self, params: dict[str, str]) -> str:
        bound = sorted((k, v) for k, v in params.items() if k not in ("offset", "limit", "opt_pretty"))
        return hashlib.sha256(json.dumps(bound).encode()).hexdigest()[:16]

    def make_offset(self, params: dict[str, str], position: int) -> str:
        payload = json.dumps([position, self._query_key(params), time.time()]).encode()
        sig = hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(payload + sig).decode().rstrip("=")

    def read_offset(self, params: dict[str, str]) -> int | None:
        """The position an offset stands for, or None if it is invalid or expired."""
        token = params["offset"]
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload, sig = raw[:-12], raw[-12:]
            if not hmac.compare_digest(sig, hmac.new(self._secret, payload, hashlib.sha256).digest()[:12]):
                return None
            position, key, issued = json.loads(payload)
        except (ValueError, TypeError):
            return None
        if key != self._query_key(params):
            return None
        if self.offset_ttl is not None and time.time() - issued > self.offset_ttl:
            return None
        return int(position)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    simulator: AsanaSimulator


class _Reset(Exception):
    """Drop the connection without an answer."""


_FILTERS = ("task", "attributable_to", "portfolio", "user", "workspace")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        sim = self.server.simulator
        parts = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/_simulator/stats":  # for benchmarks: not part of Asana's API
            self._send(*_json(200, sim.stats()))
            return
        self._recorded_as: str | None = None
        self._drip: Fault | None = None  # a "drip" or "drip_body" fault to answer with
        retry_after, in_flight = sim._admit()
        if retry_after is not None:
            status, body, headers = _error(429, "You have made too many requests recently. "
                                                "Please, be chill.")
            headers["Retry-After"] = f"{retry_after:.3g}"
            sim._record("GET", path, params, status)
            self._send(status, body, headers)
            return
        try:
            if sim.latency:
                time.sleep(sim.latency)
            status, body, headers = self._answer(sim, path, params)
        except _Reset:
            sim._record("GET", path, params, "reset")
            self._reset()
            return
        finally:
            sim._release()
        sim._record("GET", path, params, self._recorded_as or status, in_flight)
        if self._drip is not None:
            self._send_dripping(status, body, headers)
        else:
            self._send(status, body, headers)

    def _answer(self, sim: AsanaSimulator, path: str, params: dict[str, str]
                ) -> tuple[int, bytes, dict[str, str]]:
        if self.headers.get("Authorization") != f"Bearer {sim.token}":
            return _error(401, "Not Authorized")
        fault = sim._take_fault(path, params)
        if fault is not None:
            return self._fault(sim, fault, path, params)
        if sim.before_answer is not None:
            sim.before_answer(path, params)
        if sim.payment_required:
            return _error(402, "Time tracking is only available on Asana's Advanced and Enterprise plans.")
        return self._route(sim, path, params)

    def _fault(self, sim: AsanaSimulator, fault: Fault, path: str, params: dict[str, str]
               ) -> tuple[int, bytes, dict[str, str]]:
        if fault.kind == "reset":
            raise _Reset
        if fault.kind == "truncate":
            self._recorded_as = "truncate"
            status, body, headers = self._route(sim, path, params)
            return status, body[: max(1, len(body) // 2)], headers
        if fault.kind == "expire_offset":
            return _error(400, "offset: Your pagination token has expired or is invalid. "
                               "Please restart your query.")
        if fault.kind in ("drip", "drip_body"):
            self._recorded_as, self._drip = str(fault.kind), fault
            return self._route(sim, path, params)
        if fault.kind in OFFSET_FAULTS:
            self._recorded_as = str(fault.kind)
            return self._endless(sim, fault, path, params)
        status = int(fault.kind)
        headers = {}
        if status == 429:
            headers["Retry-After"] = f"{fault.retry_after if fault.retry_after is not None else 1:g}"
            status, body, _ = _error(429, "You have made too many requests recently. "
                                          "Please, be chill.")
            return status, body, headers
        if status in (502, 503, 504):
            html = f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"
            return status, html.encode(), {"Content-Type": "text/html"}
        return _error(status, {500: "Server Error"}.get(status, f"Simulated HTTP {status}"))

    def _endless(self, sim: AsanaSimulator, fault: Fault, path: str, params: dict[str, str]
                 ) -> tuple[int, bytes, dict[str, str]]:
        """The real page, changed as `fault` says, so that its listing would never end."""
        status, body, headers = self._route(sim, path, params)
        if status != 200:
            return status, body, headers
        page = orjson.loads(body)
        if fault.kind == "cycle_offset":
            offset = fault.first_offsets[sim._query_key(params)]
        else:
            offset = sim.make_offset(params, sim.read_offset(params))
            first = {k: v for k, v in params.items() if k != "offset"}
            page["data"] = [] if fault.kind == "empty_page" else orjson.loads(
                self._route(sim, path, first)[1])["data"]
        page["next_page"] = _next_page(sim, params, offset)
        return status, orjson.dumps(page), headers

    def _route(self, sim: AsanaSimulator, path: str, params: dict[str, str]
               ) -> tuple[int, bytes, dict[str, str]]:
        """The endpoint's real answer (no faults, no auth check)."""
        prefix = "/api/1.0/time_tracking_entries"
        if path == prefix:
            return self._list(sim, params)
        if path.startswith(prefix + "/"):
            return self._one(sim, path[len(prefix) + 1:], params)
        return _error(404, "Not found")

    def _list(self, sim: AsanaSimulator, params: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        data = sim.dataset
        filters = [(name, params[name]) for name in _FILTERS if name in params]
        if not filters:
            return _error(400, "Must specify exactly one of task, attributable_to, portfolio, "
                               "user or workspace.")
        for name, gid in filters:
            if not gid.isdigit():
                return _error(400, f"{name}: Not a valid gid: {gid}")
            if gid in sim.forbidden:
                return _error(403, f"{name}: Forbidden")
            known = {
                "task": data.tasks,
                "attributable_to": data.projects,
                "portfolio": data.portfolios,
                "user": data.users,
                "workspace": {data.workspace_gid: None},
            }[name]
            if gid not in known:
                return _error(404, f"{name}: Unknown object: {gid}")
        for name in ("entered_on_start_date", "entered_on_end_date"):
            if name in params and not sim.ignores_dates:
                try:
                    dt.date.fromisoformat(params[name])
                except ValueError:
                    return _error(400, f"{name}: Not a valid date: {params[name]}")
                filters.append((name, params[name]))
        if "workspace" in params and not any(name.startswith("entered_on") for name in params):
            return _error(400, "workspace: entered_on_start_date or entered_on_end_date is "
                               "required with workspace")
        limit = None
        if "limit" in params:
            try:
                limit = int(params["limit"])
            except ValueError:
                limit = 0
            if not 1 <= limit <= 100:
                return _error(400, "limit: Must be between 1 and 100")
        position = 0
        if "offset" in params:
            if limit is None:
                return _error(400, "offset: An offset requires a limit")
            read = sim.read_offset(params)
            if read is None:
                return _error(400, "offset: Your pagination token has expired or is invalid. "
                                   "Please restart your query.")
            position = read
        fields = set(params["opt_fields"].split(",")) if params.get("opt_fields") else None
        with data.lock:
            gids = data.matching(tuple(filters), sim.exclusive_bounds)
            if limit is None:
                if len(gids) > 1000:
                    return _error(400, "The result is too large. You should use pagination "
                                       "(may require specifying a workspace)!")
                page = gids
                next_page = None
            else:
                page = gids[position:position + limit]
                end = position + limit
                next_page = None
                if end < len(gids):
                    next_page = _next_page(sim, params, sim.make_offset(params, end))
            entries = data.entries_json(page, fields)
        body = b'{"data":' + entries
        if limit is not None:
            body += b',"next_page":' + orjson.dumps(next_page)
        return 200, body + b"}", {}

    def _one(self, sim: AsanaSimulator, gid: str, params: dict[str, str]
             ) -> tuple[int, bytes, dict[str, str]]:
        fields = set(params["opt_fields"].split(",")) if params.get("opt_fields") else None
        with sim.dataset.lock:
            entry = sim.dataset.entries.get(gid)
            if entry is None:
                return _error(404, f"time_tracking_entry: Unknown object: {gid}")
            return _json(200, {"data": sim.dataset.entry_json(entry, fields)})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json; charset=UTF-8"))
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_dripping(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """`_send`, a byte at a time, until the client hangs up."""
        wfile = self.wfile
        self.wfile = _Drip(wfile, self._drip.seconds,  # type: ignore[assignment, union-attr]
                           headers_at_once=self._drip.kind == "drip_body")
        try:
            self._send(status, body, headers)
        except OSError:  # the client gave up waiting
            self.close_connection = True
        finally:
            self.wfile = wfile

    def _reset(self) -> None:
        # SO_LINGER 0: close with RST, as a dropped connection looks to the client
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


class _Drip:
    """Writes what it is given one byte every `seconds` (with `headers_at_once`, all of its
    first write: the headers, which `end_headers` writes at one go)."""

    def __init__(self, wfile: Any, seconds: float, headers_at_once: bool) -> None:
        self.wfile = wfile
        self.seconds = seconds
        self.passes = int(headers_at_once)

    def write(self, data: bytes) -> int:
        if self.passes:
            self.passes -= 1
            return self.wfile.write(data)
        for i in range(len(data)):
            time.sleep(self.seconds)
            self.wfile.write(data[i:i + 1])
        return len(data)

    def flush(self) -> None:
        self.wfile.flush()


def _next_page(sim: AsanaSimulator, params: dict[str, str], offset: str) -> dict[str, str]:
    """A listing's `next_page` object, to go on from `offset`."""
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "offset")
    path = f"/time_tracking_entries?{query}&offset={offset}"
    return {"offset": offset, "path": path, "uri": sim.base_url + path}


def _json(status: int, body: Any) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps(body, ensure_ascii=False).encode("utf-8"), {}


def _error(status: int, message: str) -> tuple[int, bytes, dict[str, str]]:
    error: dict[str, str] = {"message": message, "help": HELP}
    if status >= 500:
        error["phrase"] = "6 sad squid snuggle softly"
    return _json(status, {"errors": [error]})


def main(argv: list[str] | None = None) -> None:
    """A simulated Asana time tracking API on 127.0.0.1, serving a generated dataset
    until killed (Ctrl-C). It prints one line of JSON first: the base URL, the token
    and the workspace, user, project and portfolio gids, for a config or a script."""
    parser = argparse.ArgumentParser(prog="python -m etl.simulator", description=main.__doc__)
    parser.add_argument("--entries", type=int, default=1000,
                        help="time tracking entries to generate, by skewed users (a few log "
                             "most of the hours); default %(default)s")
    parser.add_argument("--users", type=int, default=12,
                        help="users who log time; default %(default)s")
    parser.add_argument("--projects", type=int, default=10,
                        help="projects the entries are attributable to; default %(default)s")
    parser.add_argument("--seed", type=int, default=1,
                        help="the random seed: the same seed, the same dataset; default "
                             "%(default)s")
    parser.add_argument("--port", type=int, default=0,
                        help="the port on 127.0.0.1 to listen on; default any free one")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added to every answer, as a far-away server would; "
                             "default none")
    parser.add_argument("--rate-limit", default=None, metavar="REQUESTS/SECONDS",
                        help="answer 429 with Retry-After beyond this rate, e.g. 150/6 "
                             "(Asana's 1,500 a minute, scaled); default no limit")
    args = parser.parse_args(argv)
    rate_limit = None
    if args.rate_limit:
        count, seconds = args.rate_limit.split("/")
        rate_limit = (int(count), float(seconds))
    data = Dataset.generate(args.seed, entries=args.entries, users=args.users,
                            projects=args.projects, tasks=max(60, args.projects * 6))
    from etl.extract import OPT_FIELDS

    # serialise every entry now, as asana-etl asks for them: a benchmark then measures
    # the tool, not the simulator's first pass
    data.entries_json(list(data.entries), set(OPT_FIELDS.split(",")))
    server = AsanaSimulator(data, port=args.port, latency=args.latency, rate_limit=rate_limit)
    print(json.dumps({
        "base_url": server.base_url, "token": server.token, "workspace": data.workspace_gid,
        "users": list(data.users), "projects": list(data.projects),
        "portfolios": list(data.portfolios), "entries": len(data.entries),
    }), flush=True)
    try:
        server._server.serve_forever(0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
