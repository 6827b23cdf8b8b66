"""The fetcher's request scheduler on its own: which request goes next, and how many
listings are open. Its real use is in every sync; here each rule is seen alone."""

from __future__ import annotations

import datetime as dt
import threading

from etl.asana.pagination import Pagination
from etl.asana.ratelimit import RateLimiter
from etl.config import DateWindow, Scope
from etl.run import plan
from etl.run.scheduler import (
    OFFSET_PATIENCE,
    ListingTask,
    RequestScheduler,
    ScopeProgress,
    SingleRequest,
)

A, B, C = Scope("user", "1"), Scope("user", "2"), Scope("project", "3")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scheduler(queues: int = 1, clock: Clock | None = None) -> RequestScheduler:
    # a rate no test reaches: the limiter never waits
    return RequestScheduler(RateLimiter(10_000_000, sleep=lambda s: None), queues=queues,
                            clock=clock or Clock())


def begun(task: ListingTask, pages_read: int) -> ListingTask:
    task.pages = Pagination("/time_tracking_entries", {}, 100)
    task.pages.number = pages_read
    return task


def single(scope: Scope, sent: list[str], name: str) -> SingleRequest:
    return SingleRequest(scope, lambda: sent.append(name))


def test_unknown_listings_first_then_the_most_pages_left_then_single_requests():
    s = scheduler()
    small = ListingTask(A, DateWindow(), estimate=3)
    large = ListingTask(B, DateWindow(), estimate=40)
    unknown = ListingTask(C, DateWindow(), estimate=None)
    sent: list[str] = []
    s.add_single(0, [single(A, sent, "confirm")])
    s.add([small, large, unknown])
    assert [s.take(), s.take(), s.take()] == [unknown, large, small]
    s.take().send()
    assert sent == ["confirm"]


def test_between_equals_the_one_that_read_fewer_pages_goes_first():
    s = scheduler()
    ahead = begun(ListingTask(A, DateWindow(), estimate=20), pages_read=5)
    behind = begun(ListingTask(B, DateWindow(), estimate=15), pages_read=0)
    s.put_back(ahead)  # both have 15 pages left
    s.put_back(behind)
    assert s.take() is behind


def test_of_listings_whose_size_stays_unknown_the_scope_that_read_most_goes_first():
    # pages in no particular order tell no size: a scope that has gone far is likely
    # the largest (a few people log most hours); its own pieces share evenly
    s = scheduler()
    far, near = ScopeProgress(), ScopeProgress()
    small = begun(ListingTask(A, DateWindow(), None, progress=near), pages_read=3)
    piece_1 = begun(ListingTask(B, DateWindow(until=dt.date(2026, 1, 1)), None, progress=far),
                    pages_read=4)
    piece_2 = begun(ListingTask(B, DateWindow(since=dt.date(2026, 1, 2)), None, progress=far),
                    pages_read=2)
    near.pages, far.pages = 3, 6
    for task in (small, piece_1, piece_2):
        s.put_back(task)
    assert [s.take(), s.take(), s.take()] == [piece_2, piece_1, small]


def test_an_offset_that_waited_too_long_goes_before_all():
    clock = Clock()
    s = scheduler(clock=clock)
    waiting = begun(ListingTask(A, DateWindow(), estimate=2), pages_read=1)
    s.put_back(waiting)
    s.add([ListingTask(B, DateWindow(), estimate=None), ListingTask(C, DateWindow(), estimate=90)])
    clock.now += OFFSET_PATIENCE + 1
    assert s.take() is waiting


def test_single_requests_come_from_the_first_queue_that_has_one():
    s = scheduler(queues=2)
    sent: list[str] = []
    s.add_single(1, [single(A, sent, "detail")])
    s.add_single(0, [single(A, sent, "confirm 1"), single(B, sent, "confirm 2")])
    for _ in range(3):
        s.take().send()
    assert sent == ["confirm 1", "confirm 2", "detail"]


def test_open_counts_listings_from_ready_to_ended_and_a_split_replaces_its_listing():
    s = scheduler()
    s.add([ListingTask(A, DateWindow(), None), ListingTask(B, DateWindow(), None)])
    assert s.open == 2
    first = s.take()
    assert s.open == 2  # being read is open too
    halves = [ListingTask(first.scope, DateWindow(until=dt.date(2026, 1, 1)), None),
              ListingTask(first.scope, DateWindow(since=dt.date(2026, 1, 2)), None)]
    s.add(halves, replacing=first)
    assert s.open == 3
    s.ended(halves[0])
    assert s.open == 2


def test_work_left_counts_the_other_open_listings_and_whether_one_is_still_unknown():
    s = scheduler()
    planned = ListingTask(A, DateWindow(), 30, planned=True)
    unknown = ListingTask(B, DateWindow(), None)
    s.add([planned, unknown])
    assert s.work_left(planned) == (plan.MIN_PIECE_PAGES, True)  # unknown: the least piece
    assert s.work_left(unknown) == (30, False)
    first = s.take()  # the unknown one goes first; once asked, it is no longer to learn
    assert first is unknown
    begun(first, pages_read=0)
    assert s.work_left(planned) == (plan.MIN_PIECE_PAGES, False)


def test_cancel_takes_out_the_ready_listings_of_one_scope_only():
    s = scheduler()
    mine = [ListingTask(A, DateWindow(), 5), ListingTask(A, DateWindow(), 6)]
    other = ListingTask(B, DateWindow(), 1)
    s.add([*mine, other])
    assert set(s.cancel(A)) == set(mine)
    assert s.take() is other
    assert s.open == 3  # cancelled listings are still open until each is ended


def test_a_worker_waits_while_there_is_nothing_to_do_and_wakes_for_new_work():
    s = scheduler()
    taken: list[object] = []
    worker = threading.Thread(target=lambda: taken.append(s.take()))
    worker.start()
    worker.join(timeout=0.2)
    assert worker.is_alive() and not taken
    task = ListingTask(A, DateWindow(), None)
    s.add([task])
    worker.join(timeout=5)
    assert taken == [task]
