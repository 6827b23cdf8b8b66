"""AsanaClient through real HTTP against the simulator: retries, classification, paging."""

from __future__ import annotations

import http.server
import itertools
import threading
import time
from urllib.parse import urlencode

import pytest
import requests

from etl.asana.client import AsanaClient, make_session, send
from etl.asana.responses import classify, decode_json, parse_retry_after
from etl.asana.pagination import MAX_STALE_PAGES, OFFSETS_KEPT, Pagination, _Gids
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


def test_a_host_that_refuses_connections_fails_in_seconds_named_with_its_port(sleep):
    settings = AsanaSettings(base_url="http://127.0.0.1:9/api/1.0", max_retries=8,
                             backoff_max_seconds=60, timeout_seconds=1,
                             requests_per_minute=1_000_000)
    with AsanaClient(settings, Secret("tok-unreachable"), sleep=sleep) as client:
        with pytest.raises(RetriableError) as info:
            client.get(PATH, {})
    assert str(info.value).startswith("cannot connect to 127.0.0.1:9 (ConnectionRefusedError): "
                                      "is [asana] base_url right, and the host up?")
    # two short retries, whatever max_retries and backoff_max_seconds allow
    assert len(sleep.waits) == 2 and max(sleep.waits) <= 1.0
    assert "tok-unreachable" not in repr(info.value)


def test_a_404_from_a_base_url_without_api_1_0_says_so(asana_server, sleep):
    root = asana_server.base_url.removesuffix("/api/1.0")
    settings = AsanaSettings(base_url=root, requests_per_minute=1_000_000)
    with AsanaClient(settings, Secret(TOKEN), sleep=sleep) as client:
        with pytest.raises(RequestRejectedError) as info:
            client.get(PATH, {"workspace": asana_server.dataset.workspace_gid})
    assert "is [asana] base_url right? it should end in /api/1.0" in str(info.value)


def test_the_token_travels_as_a_bearer_header(asana_server, client):
    assert client.session.headers["Authorization"] == f"Bearer {TOKEN}"
    assert client.session.headers["User-Agent"].startswith("asana-etl/")


def test_a_request_goes_out_as_the_session_would_send_it(asana_server, client):
    """The client hands requests to the session's adapter itself (`client.send`): the
    same URL, query and headers as `Session.get`'s."""
    url = asana_server.base_url + PATH
    params = {"workspace": "1", "opt_fields": "a,b.c", "offset": "eyJ+/= x~é", "limit": 5}
    prepared = client.session.prepare_request(requests.Request("GET", url, params=params))
    assert prepared.url == f"{url}?{urlencode(params, doseq=True)}"
    body = client.get(PATH, workspace(asana_server))
    assert len(body["data"]) == 5
    [asked] = asana_server.requests[-1:]
    assert asked.params["limit"] == "5" and asked.path == "/api/1.0" + PATH


def test_an_answer_that_redirects_is_followed(asana_server, client):
    """A server in front that redirects (http to https, a moved host): followed as the
    session follows it."""
    target = asana_server.base_url

    class Moved(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(301)
            self.send_header("Location", target + self.path.removeprefix("/api/1.0"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        response = send(client.session, f"http://127.0.0.1:{server.server_port}/api/1.0{PATH}",
                        workspace(asana_server), 5)
    finally:
        server.shutdown()
    # followed (requests drops the token on the way to another host: Asana's 401 then)
    assert [r.status_code for r in response.history] == [301]
    assert response.url.startswith(target) and response.status_code == 401


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


def listing(server):
    return {"workspace": server.dataset.workspace_gid, **DATED}


def test_paginate_fails_on_an_offset_that_comes_back(asana_server, client):
    asana_server.add_fault("cycle_offset", times=1000)  # A → B → A → B ... for ever
    with pytest.raises(RequestRejectedError,
                       match=r"Asana returned offset '.+' twice in this listing \(page 3\): "
                             "the listing would loop"):
        list(client.paginate(PATH, listing(asana_server), page_size=10))
    assert asana_server.count() == 3


def test_the_same_offset_at_once_fails_too():
    pages = Pagination(PATH, {}, 10)
    pages.advance({"data": [{"gid": "1"}], "next_page": {"offset": "same"}})
    with pytest.raises(RequestRejectedError, match=r"offset 'same' twice .*\(page 2\)"):
        pages.advance({"data": [{"gid": "2"}], "next_page": {"offset": "same"}})


@pytest.mark.parametrize("kind", ["repeat_page", "empty_page"])
def test_paginate_fails_after_five_pages_of_nothing_new(asana_server, client, kind):
    asana_server.add_fault(kind, times=1000)  # a new offset every time, for ever
    with pytest.raises(RequestRejectedError,
                       match=r"^5 pages in a row brought no new entry \(page 6\): "
                             "the listing would not end$"):
        list(client.paginate(PATH, listing(asana_server), page_size=10))
    assert asana_server.count(kind) == MAX_STALE_PAGES == 5


def test_fewer_pages_of_nothing_new_lose_nothing(asana_server, client):
    data = asana_server.dataset
    later = itertools.count()
    asana_server.add_fault("repeat_page", times=MAX_STALE_PAGES - 1)
    asana_server.add_fault("empty_page", times=MAX_STALE_PAGES - 1,  # two real pages between
                           when=lambda path, params: next(later) >= 2)
    pages = list(client.paginate(PATH, listing(asana_server), page_size=40))
    assert {e["gid"] for p in pages for e in p.data} == set(data.entries)
    assert len(pages) == -(-len(data.entries) // 40) + 2 * (MAX_STALE_PAGES - 1)


def test_one_new_entry_resets_the_count_and_old_gids_are_remembered():
    """Pure: gids aged out of the window into arrays, gids that are not digits, entries
    without one; within what it keeps exactly, every gid had is known."""
    pages = Pagination(PATH, {}, 100)
    gid = iter(range(10**15, 10**16))
    count = _Gids.KEPT  # all aged into the arrays, none sampled yet
    old = [{"gid": str(next(gid))} for _ in range(count)] + [{"gid": "x-1"}, {"gid": "9" * 30}]
    for n in range(0, len(old), 100):
        pages.advance({"data": old[n:n + 100], "next_page": {"offset": f"o{n}"}})
    assert pages._gids._limit == 1 << 64  # exact still
    stale = [old[:1], old[_Gids.WINDOW + 5:_Gids.WINDOW + 9], old[-2:], [{"no": "gid"}, 7]]
    for n, data in enumerate(stale):  # four pages of nothing new, then one new entry ...
        pages.advance({"data": data, "next_page": {"offset": f"s{n}"}})
    pages.advance({"data": old[:3] + [{"gid": str(next(gid))}], "next_page": {"offset": "new"}})
    for n in range(MAX_STALE_PAGES - 1):  # ... so four more are allowed
        pages.advance({"data": [], "next_page": {"offset": f"e{n}"}})
    with pytest.raises(RequestRejectedError, match="5 pages in a row"):
        pages.advance({"data": old[-100:], "next_page": {"offset": "last"}})
    assert pages.advance({"data": [], "next_page": None}) == [] and pages.done


def million(pages: Pagination, start: int = 10**15, step: int = 7) -> list[list[dict]]:
    """A listing of a million entries, 100 a page, each new; returns its first pages."""
    first = []
    for n in range(10_000):
        data = [{"gid": str(start + step * (100 * n + i))} for i in range(100)]
        if n < 20:
            first.append(data)
        pages.advance({"data": data, "next_page": {"offset": f"o{n}"}})
    return first


def test_what_a_listing_keeps_of_its_gids_is_bounded_and_it_still_catches_a_loop():
    """A million entries: the window and the arrays stay within their bounds; a listing
    that then goes back over its first pages, its oldest, fails all the same (after more
    pages than an exact set would need: those its sample tells), and one that goes back
    over its latest pages after five."""
    pages = Pagination(PATH, {}, 100)
    first = million(pages)
    exact, kept = pages._gids.sizes()
    assert exact <= 2 * _Gids.WINDOW + 200 and kept <= _Gids.KEPT
    assert pages._gids._limit < 1 << 64  # a sample by now
    with pytest.raises(RequestRejectedError,
                       match=r"^\d+ pages in a row brought no new entry \(page \d+\)"):
        for n in range(1000):
            pages.advance({"data": first[n % len(first)], "next_page": {"offset": f"r{n}"}})
    assert MAX_STALE_PAGES <= pages.number - 10_000 <= 200
    latest = Pagination(PATH, {}, 100)
    million(latest)
    last = [{"gid": str(10**15 + 7 * (999_900 + i))} for i in range(100)]
    with pytest.raises(RequestRejectedError, match=r"^5 pages in a row .* \(page 10005\)"):
        for n in range(MAX_STALE_PAGES):
            latest.advance({"data": last, "next_page": {"offset": f"r{n}"}})


def test_a_listing_that_moves_on_is_not_failed_for_what_it_forgot():
    """Beyond what it keeps exactly, pages of old entries of every age, each with as many
    new ones, go on: the new ones show in the sample."""
    pages = Pagination(PATH, {}, 100)
    million(pages)
    for n in range(3000):
        data = [{"gid": str(10**15 + 7 * ((n * 4999 + i * 101) % 1_000_000))} for i in range(50)]
        data += [{"gid": str(2 * 10**15 + 50 * n + i)} for i in range(50)]
        pages.advance({"data": data, "next_page": {"offset": f"m{n}"}})
    assert pages.number == 13_000


def test_only_the_latest_offsets_are_kept_and_a_longer_loop_is_caught_by_its_entries():
    pages = Pagination(PATH, {}, 10)
    for n in range(OFFSETS_KEPT * 4):
        pages.advance({"data": [{"gid": str(n)}], "next_page": {"offset": f"o{n}"}})
    assert len(pages._offsets._values) == OFFSETS_KEPT
    with pytest.raises(RequestRejectedError, match="twice in this listing"):  # a recent one
        pages.advance({"data": [{"gid": "x"}], "next_page": {"offset": f"o{OFFSETS_KEPT * 4 - 3}"}})
    loop = Pagination(PATH, {}, 10)
    for n in range(OFFSETS_KEPT * 2):
        loop.advance({"data": [{"gid": str(n)}], "next_page": {"offset": f"o{n}"}})
    with pytest.raises(RequestRejectedError, match="5 pages in a row"):  # forgotten: by gids
        for n in range(OFFSETS_KEPT):
            loop.advance({"data": [{"gid": str(n)}], "next_page": {"offset": f"o{n}"}})
    assert loop.number == OFFSETS_KEPT * 2 + MAX_STALE_PAGES


def test_an_offset_that_is_not_a_string_fails_the_listing():
    with pytest.raises(RequestRejectedError, match=r"offset that is not a string \(page 1\)"):
        Pagination(PATH, {}, 10).advance({"data": [], "next_page": {"offset": ["a"]}})


@pytest.fixture
def quick(asana_server, sleep):
    """A client whose requests may take half a second in all."""
    settings = AsanaSettings(base_url=asana_server.base_url, max_retries=2, timeout_seconds=0.5,
                             requests_per_minute=1_000_000)
    with AsanaClient(settings, Secret(TOKEN), sleep=sleep) as client:
        yield client


@pytest.mark.parametrize("kind", ["drip", "drip_body"])
def test_an_answer_sent_a_byte_at_a_time_times_out_in_total(asana_server, quick, sleep, kind):
    asana_server.add_fault(kind, seconds=0.2, times=3)  # each byte well within 0.5 s
    started = time.monotonic()
    with pytest.raises(RetriableError, match=r"^Asana's answer took longer than 0.5 s in total "
                                             r"\(\[asana\] timeout_seconds\): the server sent "
                                             "it too slowly$") as info:
        quick.get(PATH, {**listing(asana_server), "limit": 5})
    assert 1.5 <= time.monotonic() - started < 2.5  # three tries of 0.5 s
    assert asana_server.count(kind) == 3 and len(sleep.waits) == 2
    assert TOKEN not in str(info.value)
    assert len(quick.get(PATH, {**listing(asana_server), "limit": 5})["data"]) == 5  # recovered


def test_a_slow_answer_that_ends_in_time_is_taken(asana_server, quick, sleep):
    gid = next(iter(asana_server.dataset.entries))
    asana_server.add_fault("drip_body", seconds=0.001)  # ~100 bytes: a tenth of a second
    assert quick.get(f"{PATH}/{gid}", {"opt_fields": "entered_on"})["data"]["gid"] == gid
    assert sleep.waits == []


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
