"""AsanaClient through real HTTP against the simulator: retries, classification, paging."""

from __future__ import annotations

import pytest
import requests

from etl.asana import AsanaClient, classify, decode_json, make_session, parse_retry_after
from etl.config import AsanaSettings, Secret
from etl.errors import AuthError, RateLimitedError, RequestRejectedError, RetriableError
from tests.helpers import TOKEN

#: a workspace listing needs a date (as on the live API)
DATED = {"entered_on_start_date": "1900-01-01"}

PATH = "/time_tracking_entries"


@pytest.fixture
def client(asana_server, sleep):
    settings = AsanaSettings(base_url=asana_server.base_url, max_retries=3, max_rate_limit_waits=4,
                             timeout_seconds=5, requests_per_minute=1_000_000)
    with AsanaClient(settings, Secret(TOKEN), sleep=sleep) as client:
        yield client


def workspace(server):
    return {"workspace": server.dataset.workspace_gid, **DATED, "limit": 5}


@pytest.mark.parametrize("fault", [500, 502, 503, 504, "reset", "truncate"])
def test_transient_failures_are_retried_then_succeed(asana_server, client, sleep, fault):
    asana_server.add_fault(fault, times=2)
    body = client.get(PATH, workspace(asana_server))
    assert len(body["data"]) == 5
    assert len(sleep.waits) == 2 and client.stats.retries == 2
    assert sleep.waits[1] > 0


def test_429_waits_what_retry_after_says(asana_server, client, sleep):
    asana_server.add_fault(429, retry_after=12, times=1)
    client.get(PATH, workspace(asana_server))
    assert 12 <= sleep.waits[0] < 12.5
    assert client.stats.rate_limited == 1 and client.stats.retry_after_seconds >= 12


def test_429s_have_their_own_budget(asana_server, client, sleep):
    # 4 waits on 429 are allowed even though only 3 failures are
    asana_server.add_fault(429, retry_after=1, times=4)
    asana_server.add_fault(500, times=3)
    client.get(PATH, workspace(asana_server))
    assert len(sleep.waits) == 7


def test_retries_exhausted_raise_the_last_failure(asana_server, client, sleep):
    asana_server.add_fault(500, times=10)
    with pytest.raises(RetriableError, match="HTTP 500: Server Error") as info:
        client.get(PATH, workspace(asana_server))
    assert info.value.phrase == "6 sad squid snuggle softly"
    assert asana_server.count(500) == 4  # one try + max_retries


def test_rate_limit_budget_exhausted(asana_server, client, sleep):
    asana_server.add_fault(429, retry_after=1, times=10)
    with pytest.raises(RateLimitedError):
        client.get(PATH, workspace(asana_server))
    assert asana_server.count(429) == 5


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_are_not_retried_and_keep_asanas_message(asana_server, client, sleep, status):
    asana_server.add_fault(status)
    with pytest.raises(RequestRejectedError) as info:
        client.get(PATH, workspace(asana_server))
    assert info.value.status == status
    assert sleep.waits == [] and asana_server.count() == 1


def test_unknown_scope_surfaces_asanas_message(asana_server, client):
    with pytest.raises(RequestRejectedError, match=r"HTTP 404: user: Unknown object: 42"):
        client.get(PATH, {"user": "42", "limit": 5})


def test_401_and_402_are_auth_errors_and_not_retried(asana_server, sleep):
    settings = AsanaSettings(base_url=asana_server.base_url, requests_per_minute=1_000_000)
    with AsanaClient(settings, Secret("not-the-token"), sleep=sleep) as bad:
        with pytest.raises(AuthError, match="refused the token") as info:
            bad.get(PATH, workspace(asana_server))
    assert "not-the-token" not in str(info.value)
    asana_server.payment_required = True
    with AsanaClient(settings, Secret(TOKEN), sleep=sleep) as good:
        with pytest.raises(AuthError, match="402.*paid plan"):
            good.get(PATH, workspace(asana_server))
    assert sleep.waits == []


def test_unreachable_server_is_retried_then_fails_without_the_token(sleep):
    settings = AsanaSettings(base_url="http://127.0.0.1:9/api/1.0", max_retries=2, timeout_seconds=1,
                             requests_per_minute=1_000_000)
    with AsanaClient(settings, Secret("tok-unreachable"), sleep=sleep) as client:
        with pytest.raises(RetriableError, match="connection failed") as info:
            client.get(PATH, {})
    assert len(sleep.waits) == 2
    assert "tok-unreachable" not in repr(info.value)


def test_the_token_travels_as_a_bearer_header(asana_server, client):
    assert client.session.headers["Authorization"] == f"Bearer {TOKEN}"
    assert client.session.headers["User-Agent"].startswith("asana-etl/")


def test_the_environment_is_read_once_and_netrc_never_replaces_the_token(monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine app.asana.com login someone password other-token\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    session = make_session(Secret(TOKEN), "https://app.asana.com/api/1.0")
    assert session.proxies["https"] == "http://proxy.example:3128"
    assert not session.trust_env  # so requests reads neither again, per request
    prepared = session.prepare_request(requests.Request("GET", "https://app.asana.com/api/1.0/x"))
    assert prepared.headers["Authorization"] == f"Bearer {TOKEN}"


def test_bodies_decode_as_the_standard_library_decodes_them():
    assert decode_json(b'{"data": [{"gid": "1", "name": "Zo\xc3\xab"}]}') == {
        "data": [{"gid": "1", "name": "Zoë"}]}
    assert decode_json(b'{"x": 1e400}') == {"x": float("inf")}  # orjson refuses it
    with pytest.raises(ValueError):
        decode_json(b"<html>502</html>")


def test_paginate_follows_offsets_to_the_end(asana_server, client):
    data = asana_server.dataset
    pages = list(client.paginate(PATH, {"workspace": data.workspace_gid, **DATED}, page_size=33))
    gids = [e["gid"] for p in pages for e in p.data]
    assert gids == sorted(data.entries)
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert len(pages) == -(-len(data.entries) // 33)


def test_paginate_fails_on_a_repeated_offset():
    class Loop(AsanaClient):
        def get(self, path, params=None, stats=None):
            return {"data": [{"gid": "1"}], "next_page": {"offset": "same"}}

    client = Loop(AsanaSettings(), Secret("x"))
    with pytest.raises(RequestRejectedError, match="same offset twice"):
        list(client.paginate(PATH, {}, 10))


def _response(status, body, headers=None):
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else body.encode()
    response.headers.update(headers or {})
    return response


def test_classify_survives_html_and_truncated_bodies():
    with pytest.raises(RetriableError, match="HTTP 502"):
        classify(_response(502, "<html><body>Bad Gateway</body></html>"))
    with pytest.raises(RetriableError, match="not a JSON object"):
        classify(_response(200, '{"data": [{"gid": "1"'))
    with pytest.raises(RequestRejectedError, match="HTTP 418"):
        classify(_response(418, ""))


def test_parse_retry_after():
    assert parse_retry_after("30") == 30
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
