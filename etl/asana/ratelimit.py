"""A token bucket shared by every thread that talks to Asana.

Asana allows a token 1,500 requests a minute (150 on free plans). Pacing requests
client-side means a steady run gets no 429 at all; a 429 that still comes pauses every
thread for `Retry-After`, not just the one that got it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Aim a little under the limit, so that the bucket's small burst plus the steady rate
#: stays under it in any window, whatever window the server counts in.
HEADROOM = 0.98


class RateLimiter:
    """Hands out permission to send, at `per_minute` on average.

    Args:
        per_minute: the server's limit.
        clock, sleep: injectable for tests.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = per_minute * HEADROOM / 60.0  # tokens a second
        # a tenth of a second's worth of burst: enough to absorb scheduling jitter
        self.capacity = max(1.0, self.rate * 0.1)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._slept_to = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._credit = threading.local()
        self.waited = 0.0

    def _now(self) -> float:
        # time as the sleeps say it is: the clock, or further if a sleep claimed to
        # take longer (an injected sleep in tests returns at once)
        return max(self._clock(), self._slept_to)

    def reserve(self) -> None:
        """Wait for permission now, for the next request this thread sends: a scheduler
        that picks what to send only once it may send (the best choice at that moment)
        takes the token first, and the request's own `acquire` then returns at once."""
        self.acquire()
        self._credit.held = True

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds waited."""
        if getattr(self._credit, "held", False):
            self._credit.held = False
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._now()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if now < self._paused_until:
                    delay = self._paused_until - now
                elif self._tokens >= 1.0 - 1e-9:  # float sums of refills fall just short
                    self._tokens = max(0.0, self._tokens - 1.0)
                    self.waited += waited
                    return waited
                else:
                    delay = max((1.0 - self._tokens) / self.rate, 1e-6)
            self._sleep(delay)
            waited += delay
            with self._lock:
                self._slept_to = max(self._slept_to, now + delay)

    def pause(self, seconds: float) -> None:
        """Asana said 429: nobody sends for `seconds` (a longer pause already set wins)."""
        with self._lock:
            until = self._now() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self._tokens = 0.0
