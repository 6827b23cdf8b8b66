"""The simulated Asana speaks the endpoint as documented (checked with plain requests)."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest
import requests

from etl.simulator import AsanaSimulator, Dataset
from tests.helpers import TOKEN

#: a workspace listing needs a date (as on the live API)
DATED = {"entered_on_start_date": "1900-01-01"}


def get(server, params, path="/time_tracking_entries", token=TOKEN):
    return requests.get(server.base_url + path, params=params,
                        headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_the_dataset_is_deterministic():
    a, b = Dataset.generate(seed=5, entries=50), Dataset.generate(seed=5, entries=50)
    assert a.entries == b.entries and a.users == b.users and a.portfolios == b.portfolios
    assert Dataset.generate(seed=6, entries=50).entries != a.entries


def test_limit_is_validated(asana_server):
    for limit in ("0", "101", "x"):
        response = get(asana_server, {"workspace": asana_server.dataset.workspace_gid, **DATED, "limit": limit})
        assert response.status_code == 400
        assert response.json()["errors"][0]["message"].startswith("limit:")


def test_last_page_has_null_next_page(asana_server):
    data = asana_server.dataset
    body = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 100}).json()
    offset = body["next_page"]["offset"]
    while True:
        body = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 100, "offset": offset}).json()
        if body["next_page"] is None:
            break
        offset = body["next_page"]["offset"]
    assert "next_page" in body and body["next_page"] is None


def test_offsets_are_bound_to_their_query(asana_server):
    data = asana_server.dataset
    user = next(iter(data.users))
    body = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5}).json()
    offset = body["next_page"]["offset"]
    reused = get(asana_server, {"user": user, "limit": 5, "offset": offset})
    assert reused.status_code == 400
    assert reused.json()["errors"][0]["message"].startswith("offset:")
    forged = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5, "offset": "AAAA"})
    assert forged.status_code == 400


def test_expired_offsets(asana_server):
    data = asana_server.dataset
    offset = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5}).json()["next_page"]["offset"]
    asana_server.offset_ttl = 0
    expired = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5, "offset": offset})
    assert expired.status_code == 400 and "offset" in expired.json()["errors"][0]["message"]


def test_filters(asana_server):
    data = asana_server.dataset
    portfolio, (_, held) = next(iter(data.portfolios.items()))
    body = get(asana_server, {"portfolio": portfolio, "limit": 100,
                              "opt_fields": "attributable_to"}).json()
    assert body["data"] and all(e["attributable_to"]["gid"] in held for e in body["data"])
    task = next(iter(data.tasks))
    body = get(asana_server, {"task": task}).json()  # no limit: everything, no next_page
    assert {e["gid"] for e in body["data"]} == {g for g, e in data.entries.items() if e.task_gid == task}
    assert "next_page" not in body


def test_error_bodies(asana_server):
    data = asana_server.dataset
    assert get(asana_server, {}, token="nope").status_code == 401
    assert get(asana_server, {"limit": 5}).status_code == 400
    missing = get(asana_server, {"attributable_to": "123", "limit": 5})
    assert missing.status_code == 404
    assert missing.json() == {"errors": [{"message": "attributable_to: Unknown object: 123",
                                          "help": missing.json()["errors"][0]["help"]}]}
    asana_server.forbidden.add(data.workspace_gid)
    assert get(asana_server, {"workspace": data.workspace_gid, **DATED}).status_code == 403
    asana_server.payment_required = True
    assert get(asana_server, {"user": "1"}).status_code == 402


def test_faults_on_demand(asana_server):
    data = asana_server.dataset
    asana_server.add_fault(429, retry_after=3)
    response = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5})
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    asana_server.add_fault(503)
    response = get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5})
    assert response.status_code == 503 and response.text.startswith("<html>")
    assert get(asana_server, {"workspace": data.workspace_gid, **DATED, "limit": 5}).status_code == 200


def test_single_entry_and_deletion(asana_server):
    data = asana_server.dataset
    gid = next(iter(data.entries))
    assert get(asana_server, {}, path=f"/time_tracking_entries/{gid}").json()["data"]["gid"] == gid
    data.delete_entry(gid)
    assert get(asana_server, {}, path=f"/time_tracking_entries/{gid}").status_code == 404


def test_the_server_binds_to_loopback_only():
    with AsanaSimulator(Dataset.generate(entries=5)) as server:
        assert server.base_url.startswith("http://127.0.0.1:")


def test_a_workspace_listing_needs_a_date(asana_server):
    """As the live API (`shared/asana/behaviour.md`): with `workspace`, at least one of
    the two dates."""
    data = asana_server.dataset
    refused = get(asana_server, {"workspace": data.workspace_gid, "limit": 5})
    assert refused.status_code == 400 and "entered_on_start_date" in refused.text
    assert get(asana_server, {"workspace": data.workspace_gid, "limit": 5,
                              "entered_on_end_date": "2100-01-01"}).status_code == 200


def _gids(server, params) -> list[str]:
    body = get(server, {**params, "limit": 100, "opt_fields": "entered_on"}).json()
    gids = [e["gid"] for e in body["data"]]
    while body["next_page"]:
        body = get(server, {**params, "limit": 100, "opt_fields": "entered_on",
                            "offset": body["next_page"]["offset"]}).json()
        gids += [e["gid"] for e in body["data"]]
    return gids


def test_date_filters_are_inclusive_or_exclusive_as_switched(asana_server):
    data = asana_server.dataset
    user = next(iter(data.users))
    since, until = dt.date(2026, 3, 1), dt.date(2026, 3, 31)
    params = {"user": user, "entered_on_start_date": str(since), "entered_on_end_date": str(until)}
    theirs = [e for e in data.entries.values() if e.user_gid == user]
    assert set(_gids(asana_server, params)) == {e.gid for e in theirs if since <= e.entered_on <= until}
    asana_server.exclusive_bounds = True
    assert set(_gids(asana_server, params)) == {e.gid for e in theirs if since < e.entered_on < until}
    asana_server.exclusive_bounds = False
    asana_server.ignores_dates = True
    assert set(_gids(asana_server, params)) == {e.gid for e in theirs}
    assert get(asana_server, {"user": user, "entered_on_start_date": "2026-02-30",
                              "limit": 5}).status_code == 200  # ignored, then


def test_the_data_is_shaped_like_real_data():
    data = Dataset.generate(seed=2, entries=20_000, users=40, start=dt.date(2024, 12, 2),
                            days=730)
    per_user = Counter(e.user_gid for e in data.entries.values())
    assert 7 <= max(per_user.values()) / min(per_user.values()) <= 14  # skewed ten to one
    assert list(per_user) != sorted(per_user, key=per_user.get)  # sizes unrelated to gids
    by_gid = [data.entries[g].entered_on for g in sorted(data.entries)]
    # made on or near their day, in gid order: the days rise along the gids
    near = sum(abs((a - b).days) <= 3 for a, b in zip(by_gid, by_gid[1:]))
    assert near > 0.75 * len(by_gid)  # a tenth made days late or ahead: two pairs each
    assert max(by_gid[: len(by_gid) // 10]) < min(by_gid[-len(by_gid) // 10:])


def test_listings_come_in_gid_order_or_shuffled(asana_server):
    data = asana_server.dataset
    workspace = {"workspace": data.workspace_gid, **DATED}
    assert _gids(asana_server, workspace) == sorted(data.entries)
    data.order = "shuffled"
    data._changed()
    shuffled = _gids(asana_server, workspace)
    assert sorted(shuffled) == sorted(data.entries) and shuffled != sorted(data.entries)


def test_each_request_records_how_many_were_in_hand_with_it(asana_server):
    import concurrent.futures

    asana_server.latency = 0.05
    user = next(iter(asana_server.dataset.users))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: get(asana_server, {"user": user, "limit": 1}), range(4)))
    assert max(r.in_flight for r in asana_server.requests) > 1


def listing_of(server, limit=5):
    return {"workspace": server.dataset.workspace_gid, **DATED, "limit": limit}


def follow(server, offset, limit=5):
    return get(server, {**listing_of(server, limit), "offset": offset}).json()


def test_a_cycle_fault_points_the_listing_back_to_its_first_offset(asana_server):
    asana_server.add_fault("cycle_offset", times=2)
    first = get(asana_server, listing_of(asana_server)).json()  # no offset: untouched
    a = first["next_page"]["offset"]
    b = follow(asana_server, a)["next_page"]["offset"]  # remembered, answered as usual
    third = follow(asana_server, b)
    assert b != a and third["next_page"]["offset"] == a  # A → B → A
    assert third["next_page"]["uri"].endswith(f"&offset={a}")
    assert [e["gid"] for e in third["data"]] == sorted(asana_server.dataset.entries)[10:15]
    assert asana_server.count("cycle_offset") == 1


def test_pages_of_nothing_new_come_with_new_offsets_to_the_same_place(asana_server):
    gids = sorted(asana_server.dataset.entries)
    offset = get(asana_server, listing_of(asana_server)).json()["next_page"]["offset"]
    asana_server.add_fault("repeat_page", times=1)
    asana_server.add_fault("empty_page", times=1)
    repeated = follow(asana_server, offset)
    assert [e["gid"] for e in repeated["data"]] == gids[:5]
    empty = follow(asana_server, repeated["next_page"]["offset"])
    assert empty["data"] == []
    offsets = {offset, repeated["next_page"]["offset"], empty["next_page"]["offset"]}
    assert len(offsets) == 3
    after = follow(asana_server, empty["next_page"]["offset"])  # the fault over: it goes on
    assert [e["gid"] for e in after["data"]] == gids[5:10]
    assert asana_server.count("repeat_page") == asana_server.count("empty_page") == 1


@pytest.mark.parametrize("kind", ["drip", "drip_body"])
def test_a_drip_sends_one_byte_at_a_time(asana_server, kind):
    gid = next(iter(asana_server.dataset.entries))
    asana_server.add_fault(kind, seconds=0.002)
    started = time.monotonic()
    response = requests.get(f"{asana_server.base_url}/time_tracking_entries/{gid}",
                            params={"opt_fields": "entered_on"}, stream=True, timeout=5,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    headers_took = time.monotonic() - started
    body = response.content
    assert time.monotonic() - started - headers_took >= 0.002 * len(body)
    assert response.json()["data"]["gid"] == gid
    # the headers are over 100 bytes: dripped, or at once
    assert (headers_took >= 0.2) == (kind == "drip")
    assert asana_server.count(kind) == 1


def test_a_drip_stops_when_the_client_hangs_up(asana_server):
    asana_server.add_fault("drip", seconds=0.05, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(asana_server.base_url + "/time_tracking_entries",
                     params=listing_of(asana_server), timeout=(1, 0.01),
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert get(asana_server, listing_of(asana_server)).status_code == 200  # still serving
