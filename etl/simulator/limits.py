"""Asana's limits on a token, as the simulated Asana applies them: requests in flight at
once, and accepted requests per sliding window."""

from __future__ import annotations

import collections
import threading
import time


class Admission:
    """Counts requests in and out, and says which to refuse with a 429."""

    def __init__(self) -> None:
        self._accepted: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._lock = threading.Lock()

    def admit(self, rate_limit: tuple[int, float] | None, max_in_flight: int
              ) -> tuple[float | None, int]:
        """Count a request in: None if admitted, else the Retry-After to answer 429 with;
        and how many requests are in hand with it."""
        with self._lock:
            arrived = self._in_flight + 1
            if self._in_flight >= max_in_flight:
                return 1.0, arrived
            if rate_limit is not None:
                limit, window = rate_limit
                now = time.monotonic()
                while self._accepted and self._accepted[0] <= now - window:
                    self._accepted.popleft()
                if len(self._accepted) >= limit:
                    return max(0.01, self._accepted[0] + window - now), arrived
                self._accepted.append(now)
            self._in_flight += 1
            return None, arrived

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
