"""A server whose listing would never end, or whose answer never does: a real sync over
several scopes ends, the scope that met it fails saying what the server did, and the
others load in full.

About the client, not the database: SQLite only.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter

import pytest

from etl.config import Scope
from etl.errors import ExitCode
from etl.run.pipeline import run_sync
from etl.run.result import RunResult
from tests.helpers import expected_rows, stored_rows

PAGE = 5  # entries a page: the hostile user's listing is a score of pages

LOOP = re.compile(r"^Asana returned offset '.+' twice in this listing \(page 3\): "
                  r"the listing would loop$")


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hostile.db'}"


@pytest.fixture
def hostile(asana_server) -> str:
    """The user with the most entries: the one scope whose listing meets the fault."""
    return Counter(e.user_gid for e in asana_server.dataset.entries.values()).most_common(1)[0][0]


def users(server) -> list[Scope]:
    return [Scope("user", gid) for gid in server.dataset.users]


def of(user: str):
    """A fault's `when`: the listing requests of `user` (not the preflight)."""
    return lambda path, params: params.get("user") == user and params.get("limit") == str(PAGE)


def listed(server, user: str) -> int:
    return sum(1 for r in server.requests if r.params.get("user") == user
               and r.params.get("limit") == str(PAGE))


def assert_failed_alone(result: RunResult, server, engine, user: str, message) -> None:
    """The run ended partial (exit 1), `user`'s scope failed with `message` (a regex), and
    every other scope loaded every one of its entries exactly."""
    assert result.status == "partial" and result.exit_code == ExitCode.SCOPE_FAILED == 1
    [failed] = result.failed_scopes
    assert failed.scope == Scope("user", user)
    assert re.search(message, failed.error), failed.error
    data = server.dataset
    others = {g for g, e in data.entries.items() if e.user_gid != user}
    stored, expected = stored_rows(engine), expected_rows(data)
    assert {g: stored.get(g) for g in others} == {g: expected[g] for g in others}
    assert set(stored) <= set(expected)


def test_a_next_page_that_loops_fails_its_scope_alone(asana_server, make_settings, engine, sleep,
                                                      hostile):
    asana_server.add_fault("cycle_offset", times=10_000, when=of(hostile))  # A → B → A ...
    result = run_sync(make_settings(users(asana_server), page_size=PAGE), sleep=sleep)
    assert_failed_alone(result, asana_server, engine, hostile, LOOP)
    assert listed(asana_server, hostile) == 3


def test_a_loop_after_an_expired_offset_is_caught_in_the_restarted_listing(
        asana_server, make_settings, engine, sleep, hostile):
    asana_server.add_fault("expire_offset", times=1, when=of(hostile))
    asana_server.add_fault("cycle_offset", times=10_000, when=of(hostile))
    result = run_sync(make_settings(users(asana_server), page_size=PAGE), sleep=sleep)
    assert_failed_alone(result, asana_server, engine, hostile, LOOP)
    assert result.failed_scopes[0].restarts == 1
    assert listed(asana_server, hostile) == 2 + 3  # two pages, then three of the restart


@pytest.mark.parametrize("kind", ["repeat_page", "empty_page"])
def test_new_offsets_that_bring_nothing_new_fail_after_five_pages(
        asana_server, make_settings, engine, sleep, hostile, kind):
    asana_server.add_fault(kind, times=10_000, when=of(hostile))
    result = run_sync(make_settings(users(asana_server), page_size=PAGE), sleep=sleep)
    assert_failed_alone(result, asana_server, engine, hostile,
                        r"^5 pages in a row brought no new entry \(page 6\): "
                        r"the listing would not end$")
    assert listed(asana_server, hostile) == 6


def test_a_restarted_listing_reads_its_pages_again_and_ends(asana_server, make_settings, engine,
                                                            sleep, hostile):
    offsets = itertools.count(1)
    # the 7th page's offset expires: the restart reads six pages it has had, not "nothing new"
    asana_server.add_fault("expire_offset", times=1,
                           when=lambda path, params: of(hostile)(path, params)
                           and next(offsets) == 6)
    result = run_sync(make_settings(users(asana_server), page_size=PAGE), sleep=sleep)
    assert result.status == "succeeded" and result.exit_code == 0
    [scope] = [s for s in result.scopes if s.scope == Scope("user", hostile)]
    assert scope.restarts == 1
    assert stored_rows(engine) == expected_rows(asana_server.dataset)


@pytest.mark.parametrize("kind", ["drip", "drip_body"])
def test_an_answer_sent_a_byte_at_a_time_fails_its_scope_alone(
        asana_server, make_settings, engine, sleep, hostile, kind):
    asana_server.add_fault(kind, seconds=0.2, times=10_000, when=of(hostile))
    started = time.monotonic()
    result = run_sync(make_settings(users(asana_server), page_size=PAGE, timeout_seconds=0.5,
                                    max_retries=2), sleep=sleep)
    assert time.monotonic() - started < 5  # three tries of half a second, and the rest
    assert_failed_alone(result, asana_server, engine, hostile,
                        r"^Asana's answer took longer than 0.5 s in total \(\[asana\] "
                        r"timeout_seconds\): the server sent it too slowly$")
    assert result.failed_scopes[0].retries == 2 and asana_server.count(kind) == 3


@pytest.mark.slow
def test_a_byte_every_two_seconds_against_a_three_second_timeout(
        asana_server, make_settings, engine, sleep, hostile):
    """The reliability engineer's numbers: this ran until killed."""
    asana_server.add_fault("drip", seconds=2, times=10_000, when=of(hostile))
    started = time.monotonic()
    result = run_sync(make_settings(users(asana_server), page_size=PAGE, timeout_seconds=3,
                                    max_retries=1), sleep=sleep)
    assert time.monotonic() - started < 10  # two tries of 3 s
    assert_failed_alone(result, asana_server, engine, hostile,
                        r"^Asana's answer took longer than 3 s in total")
