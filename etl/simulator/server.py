"""The simulated Asana's server: a `Dataset` served over HTTP on 127.0.0.1, with Asana's
limits (a rate per window, requests in flight), faults on demand, and signed offsets
that are bound to their query and can expire.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from etl.simulator.dataset import Dataset
from etl.simulator.faults import OFFSET_FAULTS, Fault
from etl.simulator.handler import Handler

DEMO_TOKEN = "demo-token"


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
        self._server = _Server(("127.0.0.1", port), Handler)
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
