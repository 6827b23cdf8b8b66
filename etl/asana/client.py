"""AsanaClient: one requests.Session, one retry policy, one response classifier, paginate().

Every HTTP call goes through `AsanaClient.get`, so every call gets the same treatment:
the bearer token, the timeout, the retry policy (tenacity) and the classification of
the answer into data, a retriable failure or a fatal one (`etl.asana.responses`). The
token lives only in the session's headers; no message built here contains it.

A request ends within `timeout_seconds` whatever the server sends (a watchdog cuts the
connection of one still running then), and a listing whose `next_page` would go on for
ever (an offset again, or page after page of nothing new) fails.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
import tenacity

from etl import __version__
from etl.asana.pagination import Pagination
from etl.asana.ratelimit import RateLimiter
from etl.asana.responses import (
    MAX_UNREACHABLE_RETRIES,
    UNREACHABLE_BACKOFF_SECONDS,
    UnreachableError,
    classify,
    transport_failure,
)
from etl.asana.watchdog import WatchedAdapter, Watchdog
from etl.config import AsanaSettings, Secret
from etl.errors import (
    AsanaError,
    OffsetExpiredError,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]


@dataclass
class CallStats:
    """What the retry policy did, for the run bookkeeping."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    retry_after_seconds: float = 0.0


@dataclass
class Page:
    """One page of a listing: its records and where it came from."""

    data: list[dict[str, Any]]
    number: int
    offset: str | None = None
    restart: int = 0


def make_session(token: Secret, base_url: str, pool_size: int = 10) -> requests.Session:
    """The one place a Session is built: bearer token, JSON, our User-Agent, pool size.

    The environment's proxy and CA bundle settings (`HTTPS_PROXY`, `REQUESTS_CA_BUNDLE`,
    ...) are read once here, not on every request: requests re-reads them per request,
    which cost a sixth of the client's time. A `~/.netrc` entry is ignored, so it can
    never replace the token.
    """
    session = requests.Session()
    settings = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.trust_env = False
    session.headers.update(
        {
            "Authorization": f"Bearer {token.reveal()}",
            "Accept": "application/json",
            "User-Agent": f"asana-etl/{__version__}",
        }
    )
    adapter = WatchedAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def send(session: requests.Session, url: str, params: Mapping[str, Any] | None,
         timeout: float) -> requests.Response:
    """GET `url` with `params`, its body read: the request `session.get` would send,
    handed straight to the session's adapter. `Session.get` merged the session's
    settings, cookies and hooks into every request and followed redirects: 140 of the
    500 µs of CPU a request took, for nothing an API call to Asana needs (the settings
    are the session's, set once by `make_session`; no cookies; no hooks). An answer
    that redirects is asked again the session's way, which follows it."""
    request = requests.PreparedRequest()
    request.method = "GET"
    request.url = f"{url}?{urlencode(params, doseq=True)}" if params else url
    request.headers = session.headers.copy()
    request.hooks = {"response": []}
    response = session.get_adapter(url).send(request, timeout=timeout, verify=session.verify,
                                             cert=session.cert, proxies=session.proxies)
    if response.is_redirect:
        response.close()
        return session.get(url, params=params, timeout=timeout)
    response.content  # noqa: B018 (read now, under the caller's watchdog)
    return response


@dataclass
class _Budget:
    """Separate budgets: failures vs. 429s (a 429 is Asana pacing us, not a failure)."""

    max_failures: int
    max_rate_limited: int
    failures: int = 0
    rate_limited: int = 0
    unreachable: int = 0

    def exhausted(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError):
            self.rate_limited += 1
            return self.rate_limited > self.max_rate_limited
        self.failures += 1
        if isinstance(exc, UnreachableError):
            self.unreachable += 1
            if self.unreachable > MAX_UNREACHABLE_RETRIES:
                return True
        return self.failures > self.max_failures



#: Asana's cap on requests in flight for one token.
MAX_IN_FLIGHT = 50


class AsanaClient:
    """Talks to the Asana REST API with retries and client-side rate limiting.

    Safe to share between threads: one Session (one connection pool sized to
    `concurrency`), one rate limiter, at most `MAX_IN_FLIGHT` requests in flight.

    Args:
        settings: the `[asana]` settings (base URL, timeout, retry budgets, rate).
        token: the personal access token.
        sleep: how to wait between attempts and for the rate limiter (tests pass a
            recorder that does not sleep).
    """

    _exponential = tenacity.wait_exponential_jitter(multiplier=0.5, max=60, jitter=0.5)

    def __init__(self, settings: AsanaSettings, token: Secret, sleep: Sleep = time.sleep) -> None:
        self.settings = settings
        self.sleep = sleep
        self.stats = CallStats()
        self.session = make_session(token, settings.base_url,
                                    pool_size=max(10, settings.concurrency + 2))
        self.limiter = RateLimiter(settings.requests_per_minute, sleep=self._sleep)
        self._in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._watchdog = Watchdog(settings.timeout_seconds)
        self._stats_lock = threading.Lock()

    def close(self) -> None:
        self._watchdog.close()
        self.session.close()

    def __enter__(self) -> AsanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, stats: CallStats | None = None
    ) -> dict[str, Any]:
        """GET `path` with the retry policy; the decoded JSON body on success.

        `stats`, if given, also receives this call's requests, retries and waits (the
        client's own `stats` always does).
        """
        budget = _Budget(self.settings.max_retries, self.settings.max_rate_limit_waits)
        sinks = [self.stats] if stats is None else [self.stats, stats]

        def count(**increments: float) -> None:
            with self._stats_lock:
                for sink in sinks:
                    for name, value in increments.items():
                        setattr(sink, name, getattr(sink, name) + value)

        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            assert isinstance(exc, AsanaError)
            if isinstance(exc, RateLimitedError):
                # everyone waits, not just this thread: the limiter holds all sends
                wait = (exc.retry_after + random.uniform(0, 0.25) if exc.retry_after is not None
                        else min(self._exponential(retry_state), self.settings.backoff_max_seconds))
                self.limiter.pause(wait)
                count(retries=1, rate_limited=1, retry_after_seconds=wait)
            else:
                wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
                count(retries=1)
            log.info(
                "retrying after %s (attempt %d, status %s, waiting %.2f s%s)",
                exc.message,
                retry_state.attempt_number,
                exc.status if exc.status is not None else "-",
                wait,
                f", Asana phrase {exc.phrase!r}" if exc.phrase else "",
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RetriableError),
            stop=budget.exhausted,
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(self._get_once, path, params, count)

    def _get_once(self, path: str, params: Mapping[str, Any] | None, count) -> dict[str, Any]:
        url = self.settings.base_url + path
        self.limiter.acquire()
        count(requests=1)
        # requests' timeout bounds the connect and each socket read, the watchdog the whole
        # request: both `timeout_seconds`, so requests' own never outlasts the deadline
        with self._in_flight, self._watchdog.watch() as watch:
            try:
                response = send(self.session, url, params, self.settings.timeout_seconds)
            except requests.exceptions.RequestException as exc:
                raise transport_failure(exc, too_slow=watch.expired,
                                        timeout=self.settings.timeout_seconds,
                                        base_url=self.settings.base_url) from None
        try:
            return classify(response)
        except RequestRejectedError as exc:
            if exc.status == 404 and not self.settings.base_url.rstrip("/").endswith("/api/1.0"):
                exc.message = (f"{exc.message}; is [asana] base_url right? it should end in "
                               f"/api/1.0 (it is {self.settings.base_url})")
                exc.args = (exc.message,)
            raise


    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError):
            return 0.0  # the rate limiter's pause does the waiting (see before_sleep)
        longest = self.settings.backoff_max_seconds
        if isinstance(exc, UnreachableError):
            longest = min(longest, UNREACHABLE_BACKOFF_SECONDS)
        return min(self._exponential(retry_state), longest)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep(seconds)

    def next_page(self, pages: Pagination, stats: CallStats | None = None) -> Page:
        """Fetch the next page of a listing and move `pages` past it.

        Raises:
            OffsetExpiredError: Asana no longer accepts the offset (restart the listing).
            RequestRejectedError: the answer has no `data` list, or the listing would never
                end (see `Pagination.advance`).
        """
        offset = pages.offset
        try:
            body = self.get(pages.path, pages.query(), stats)
        except RequestRejectedError as exc:
            if offset is not None and exc.status == 400 and "offset" in exc.message.lower():
                raise OffsetExpiredError(exc.message, 400) from None
            raise
        return Page(data=pages.advance(body), number=pages.number, offset=offset)

    def paginate(
        self, path: str, params: Mapping[str, Any], page_size: int, stats: CallStats | None = None
    ) -> Iterator[Page]:
        """Follow `next_page.offset` until `next_page` is null, yielding pages as they come
        (see `next_page` for what it raises)."""
        pages = Pagination(path, params, page_size)
        while not pages.done:
            yield self.next_page(pages, stats)
