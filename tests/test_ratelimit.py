"""The client-side rate limiter: a shared token bucket, and a 429 that pauses everyone."""

from __future__ import annotations

import threading

from etl.config import Scope
from etl.run.pipeline import run_sync
from etl.asana.ratelimit import HEADROOM, RateLimiter
from etl.simulator import AsanaSimulator, Dataset


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_the_bucket_paces_requests_under_the_limit():
    time = FakeTime()
    limiter = RateLimiter(1500, clock=time.clock, sleep=time.sleep)
    for _ in range(3000):
        limiter.acquire()
    # 3,000 requests at 1,500 a minute (less the headroom) take two minutes, give or take
    # the initial burst
    assert 120 / HEADROOM - 1 <= time.now <= 120 / HEADROOM + 1


def test_no_window_of_a_minute_holds_more_than_the_limit():
    time = FakeTime()
    limiter = RateLimiter(150, clock=time.clock, sleep=time.sleep)
    stamps = []
    for _ in range(600):
        limiter.acquire()
        stamps.append(time.now)
    start = 0
    for end, stamp in enumerate(stamps):
        while stamps[start] <= stamp - 60:
            start += 1
        assert end - start + 1 <= 150


def test_a_pause_holds_every_caller():
    time = FakeTime()
    limiter = RateLimiter(6000, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    limiter.pause(30)
    limiter.acquire()
    assert time.now >= 30
    limiter.pause(5)
    limiter.pause(2)  # a shorter pause does not cut the longer one
    before = time.now
    limiter.acquire()
    assert time.now - before >= 5


def test_a_rate_limited_server_sees_no_429_from_a_paced_client(tmp_path, sleep):
    """Against a server that allows 10 requests in any half second (1,200 a minute), a
    client set to 600 a minute is never told to slow down (unpaced, its first twenty
    requests would all land in the same tenth of a second). The margin is twice: on a
    busy machine requests paced apart can reach the server closer together."""
    from etl.config import AsanaSettings, Secret, Settings

    data = Dataset.generate(seed=4, entries=300, users=6)
    with AsanaSimulator(data, rate_limit=(10, 0.5)) as server:
        settings = Settings(
            asana=AsanaSettings(base_url=server.base_url, token=Secret(server.token),
                                requests_per_minute=600, concurrency=4, page_size=25),
            database_url=f"sqlite:///{tmp_path / 'paced.db'}",
            scopes=tuple(Scope("user", g) for g in data.users),
        )
        import time as real_time

        result = run_sync(settings, sleep=real_time.sleep)
        assert server.count(429) == 0
        assert server.count(200) >= 15
    assert result.status == "succeeded"
