"""Faults on the wire: every kind retried or recovered, the run ends equal to the server.

These are about the client, not the database: they run on SQLite only.
"""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from etl.store import schema
from etl.config import Scope
from etl.run.pipeline import run_sync
from tests.helpers import expected_rows, stored_rows


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'faults.db'}"


def listing(path, params):
    return path.endswith("/time_tracking_entries") and params.get("limit") != "1"


def scope_rows(engine):
    with engine.connect() as conn:
        return {(r.scope_type, r.scope_gid): r for r in conn.execute(sa.select(schema.sync_run_scopes))}


@pytest.mark.parametrize("kind", [500, 502, 503, 504, "reset", "truncate", 429])
def test_each_fault_kind_is_survived(asana_server, make_settings, engine, sleep, kind):
    asana_server.add_fault(kind, times=3, retry_after=2, when=listing)
    result = run_sync(make_settings(page_size=40), sleep=sleep)
    assert result.status == "succeeded"
    assert asana_server.count(kind) == 3
    assert stored_rows(engine) == expected_rows(asana_server.dataset)


def test_a_storm_of_mixed_faults_and_an_expired_offset(asana_server, make_settings, engine, sleep):
    rng = random.Random(42)
    kinds = [500, 502, 503, "reset", "truncate", 429]

    def sometimes(path, params):
        return listing(path, params) and rng.random() < 0.08

    for kind in kinds:
        asana_server.add_fault(kind, times=8, retry_after=1, when=sometimes)
    asana_server.add_fault("expire_offset", times=1, when=lambda p, q: "offset" in q)
    result = run_sync(make_settings(page_size=30, max_retries=8), sleep=sleep)

    assert result.status == "succeeded" and result.exit_code == 0
    assert sum(asana_server.count(k) for k in kinds) >= 20
    assert stored_rows(engine) == expected_rows(asana_server.dataset)
    assert sum(s.restarts for s in scope_rows(engine).values()) == 1


def test_an_expired_offset_restarts_that_listing(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    workspace = Scope("workspace", data.workspace_gid)
    asana_server.add_fault("expire_offset", times=1, when=lambda p, q: "offset" in q)
    result = run_sync(make_settings([workspace], page_size=50), sleep=sleep)
    assert result.status == "succeeded"
    assert scope_rows(engine)[("workspace", data.workspace_gid)].restarts == 1
    first_pages = [r for r in asana_server.requests if r.params.get("limit") == "50"
                   and "offset" not in r.params]
    assert len(first_pages) == 2  # listed from the start again
    assert stored_rows(engine) == expected_rows(data)


def test_offsets_that_keep_expiring_fail_the_scope_not_the_run(asana_server, make_settings, engine,
                                                               sleep):
    data = asana_server.dataset
    user = next(iter(data.users))
    workspace = Scope("workspace", data.workspace_gid)
    asana_server.add_fault("expire_offset", times=100,
                           when=lambda p, q: q.get("workspace") == data.workspace_gid)
    result = run_sync(make_settings([workspace, Scope("user", user)], page_size=50), sleep=sleep)
    assert result.status == "partial"
    failed = scope_rows(engine)[("workspace", data.workspace_gid)]
    assert failed.status == "failed" and "offset" in failed.error and failed.restarts == 3
    assert scope_rows(engine)[("user", user)].status == "succeeded"


def test_retries_exhausted_fail_one_scope_and_record_why(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    user = next(iter(data.users))
    asana_server.add_fault(503, times=100, when=lambda p, q: q.get("user") == user and listing(p, q))
    result = run_sync(make_settings([Scope("user", user), Scope("workspace", data.workspace_gid)],
                                    max_retries=2), sleep=sleep)
    assert result.status == "partial"
    row = scope_rows(engine)[("user", user)]
    assert row.status == "failed" and row.retries == 2 and "HTTP 503" in row.error
    assert stored_rows(engine) == expected_rows(data)  # the workspace brought everything


def test_a_forbidden_scope_fails_alone_with_asanas_message(asana_server, make_settings, engine,
                                                           sleep):
    data = asana_server.dataset
    project = next(iter(data.projects))
    asana_server.forbidden.add(project)
    result = run_sync(make_settings([Scope("project", project),
                                     Scope("workspace", data.workspace_gid)]), sleep=sleep)
    assert result.status == "partial"
    assert scope_rows(engine)[("project", project)].error == "HTTP 403: attributable_to: Forbidden"


def test_429_wait_is_recorded_per_scope(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    asana_server.add_fault(429, times=2, retry_after=5, when=listing)
    run_sync(make_settings([Scope("workspace", data.workspace_gid)]), sleep=sleep)
    row = scope_rows(engine)[("workspace", data.workspace_gid)]
    assert row.retries == 2 and 10 <= row.retry_after_seconds < 11
