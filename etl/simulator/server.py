"""The simulated Asana's server: a `Dataset` served over HTTP on 127.0.0.1, with Asana's
limits (a rate per window, requests in flight), faults on demand, and signed offsets
that are bound to their query and can expire.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from etl.simulator.dataset import Dataset
from etl.simulator.faults import Fault, FaultQueue
from etl.simulator.handler import Handler
from etl.simulator.limits import Admission
from etl.simulator.offsets import Offsets, query_key

DEMO_TOKEN = "demo-token"


@dataclass
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    status: int | str
    in_flight: int = 0  # requests being handled when this one came, itself included
    at: float = 0.0  # when it was answered (Unix time)


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
        addon: the workspace has the Timesheets & Budgets add-on (the default). Without
            it, entries show no `billable_status`, `description` or `categories` (in any
            answer), `GET /time_tracking_categories` answers 403, and
            `GET /timesheet_approval_statuses` and `GET /rates` answer 402.
        list_extra_fields: what the entries' listing does with `opt_fields` beyond the
            ones it documents (`attributable_to(.name)`, `categories(.name,.color)`,
            `created_by(.name)`, `duration_minutes`, `entered_on`): "ignore" (leave them
            out, the default), "refuse" (a 400 naming `opt_fields`), "return" (show
            them, as the single GET does) or "partial" (show them but for the add-on's,
            which the single GET shows).
        approval_case: "upper" (the default) or "lower": the case of the timesheets'
            `approval_status`, as the endpoint spoke when it first appeared. Entries'
            `approval_status` is upper case either way.
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
        self.addon = True
        self.list_extra_fields = "ignore"
        self.approval_case = "upper"
        self.offset_ttl: float | None = None
        self.latency = latency
        self.rate_limit = rate_limit
        self.max_in_flight = max_in_flight
        self._admission = Admission()
        self.before_answer: Callable[[str, dict[str, str]], None] | None = None
        self.requests: list[RequestRecord] = []
        self._first: float | None = None
        self._last: float | None = None
        self._faults = FaultQueue()
        self._offsets = Offsets()
        self._lock = threading.Lock()  # over `requests`, `_first` and `_last`
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

    # --- limits and faults ------------------------------------------------------------

    def _admit(self) -> tuple[float | None, int]:
        return self._admission.admit(self.rate_limit, self.max_in_flight)

    def _release(self) -> None:
        self._admission.release()

    def add_fault(self, kind: int | str, *, times: int = 1, retry_after: float | None = None,
                  seconds: float = 0.0,
                  when: Callable[[str, dict[str, str]], bool] | None = None) -> Fault:
        """Answer the next `times` matching requests with `kind` instead of the real answer
        (`seconds`: between two bytes of a "drip"). `when` is called with (path, params)
        and the fault queue's lock held: it must not add faults."""
        return self._faults.add(Fault(kind, times, retry_after,
                                      when or (lambda path, params: True), seconds))

    def _take_fault(self, path: str, params: dict[str, str]) -> Fault | None:
        return self._faults.take(path, params)

    # --- what was asked ---------------------------------------------------------------

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
            now = time.time()
            self.requests.append(RequestRecord(method, path, params, status, in_flight, now))
            self._last = now
            if self._first is None:
                self._first = self._last

    # --- offsets ---------------------------------------------------------------------

    def _query_key(self, params: dict[str, str], endpoint: str = "") -> str:
        return query_key(params, endpoint)

    def make_offset(self, params: dict[str, str], position: int, endpoint: str = "") -> str:
        """An offset to `position` in the results of this query of `endpoint`."""
        return self._offsets.make(params, position, endpoint)

    def read_offset(self, params: dict[str, str], endpoint: str = "") -> int | None:
        """The position an offset stands for, or None if it is invalid (another query's,
        another endpoint's) or expired."""
        return self._offsets.read(params, self.offset_ttl, endpoint)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    simulator: AsanaSimulator
