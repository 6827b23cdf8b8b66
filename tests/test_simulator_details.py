"""The simulated Asana beyond the list (`shared/asana/behaviour.md`, last section): entry
details on the single GET, the list's three answers to extra `opt_fields`, categories,
timesheet approval statuses, rates, a workspace without the Timesheets & Budgets add-on,
and edits while the server runs. All over real HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections import Counter

import pytest
import requests

from etl.simulator import (
    APPROVAL_STATUSES,
    BILLABLE_STATUSES,
    CATEGORY_COLORS,
    AsanaSimulator,
    Dataset,
    monday,
)
from tests.helpers import TOKEN

#: every field the single GET knows
DETAILS = ("task,task.name,created_at,billable_status,approval_status,description,categories,"
           "categories.name,categories.color,duration_minutes,entered_on,attributable_to,"
           "attributable_to.name,created_by,created_by.name")
#: the fields the list has never documented
EXTRA = ("task", "created_at", "approval_status", "billable_status", "description")
COMPACT = "attributable_to,attributable_to.name,created_by,created_by.name,duration_minutes,entered_on"


def get(server, path, **params):
    return requests.get(server.base_url + path, params=params,
                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def one(server, gid, fields=DETAILS):
    return get(server, f"/time_tracking_entries/{gid}", opt_fields=fields)


def every_page(server, path, **params) -> list[dict]:
    """Every item of a listing, page by page (2 a page, to page a lot)."""
    query = {**params, "limit": 2}
    body = get(server, path, **query).json()
    items = body["data"]
    while body["next_page"]:
        body = get(server, path, **query, offset=body["next_page"]["offset"]).json()
        items += body["data"]
    return items


def listing(server, fields, limit=100, **params):
    scope = params or {"user": next(iter(server.dataset.users))}
    return get(server, "/time_tracking_entries", **scope, limit=limit, opt_fields=fields)


def message(response) -> str:
    return response.json()["errors"][0]["message"]


# --- the data -------------------------------------------------------------------------


def test_the_entries_other_tests_use_did_not_move():
    """The details come from a stream of their own: the entries (gid, task, user,
    project, duration, day) of the suite's dataset are those they were before."""
    data = Dataset.generate(seed=3, entries=400, users=10, projects=6, portfolios=2, tasks=30)
    text = "\n".join(f"{e.gid} {e.task_gid} {e.user_gid} {e.attributable_to} "
                     f"{e.duration_minutes} {e.entered_on}" for e in data.entries.values())
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "8528f12f8d4d4863bb79990f516fd0670dc623c85fd85b3d87215b0c64930b29")


def test_the_details_are_deterministic():
    a, b = Dataset.generate(seed=5, entries=300), Dataset.generate(seed=5, entries=300)
    assert a.entries == b.entries and a.categories == b.categories
    assert a.timesheets == b.timesheets and a.rates == b.rates
    assert a.placeholders == b.placeholders
    c = Dataset.generate(seed=6, entries=300)
    assert [e.description for e in c.entries.values()] != [e.description for e in a.entries.values()]


def test_the_details_are_shaped_like_real_data():
    data = Dataset.generate(seed=2, entries=6000, users=20, projects=8)
    entries = list(data.entries.values())
    billable = Counter(e.billable_status for e in entries)
    assert set(billable) == set(BILLABLE_STATUSES) and billable["billable"] > len(entries) / 3
    assert all(e.billable_status != "billable" for e in entries if e.attributable_to is None)
    descriptions = [e.description for e in entries]
    assert None in descriptions and "" in descriptions
    assert any(d and not d.isascii() for d in descriptions)
    assert any(d and "\n" in d for d in descriptions)
    assert Counter(len(e.categories) for e in entries).keys() == {0, 1, 2}
    assert all(len(set(e.categories)) == len(e.categories) for e in entries)
    archived = {g for g, c in data.categories.items() if c.is_archived}
    assert archived and len(archived) < len(data.categories)
    with_archived = [e for e in entries if archived & set(e.categories)]
    # archived categories sit only on entries of the first half (they were live then)
    half_way = dt.date(2026, 1, 1) + dt.timedelta(days=150)
    assert with_archived and max(e.entered_on for e in with_archived) < half_way
    assert all(c.color in CATEGORY_COLORS for c in data.categories.values())
    # made around when they are for, and in gid order
    made = [e.created_at for e in entries]
    assert made == sorted(made) and all(m.tzinfo is not None for m in made)
    assert all(-14 <= (e.created_at.date() - e.entered_on).days <= 30 for e in entries)


def test_a_timesheet_per_user_per_week_with_entries():
    data = Dataset.generate(seed=2, entries=6000, users=20, projects=8)
    weeks = {(e.user_gid, monday(e.entered_on)) for e in data.entries.values()}
    assert set(data.timesheets) == weeks
    assert all(s.start_date.weekday() == 0 and s.end_date.weekday() == 6
               for s in data.timesheets.values())
    last = monday(dt.date(2026, 1, 1) + dt.timedelta(days=299))
    old = Counter(s.approval_status for s in data.timesheets.values()
                  if s.start_date <= last - dt.timedelta(weeks=3))
    recent = Counter(s.approval_status for s in data.timesheets.values() if s.start_date == last)
    assert old["APPROVED"] > 0.85 * sum(old.values()) and old["REJECTED"] > 0
    assert recent["APPROVED"] == 0 and recent["DRAFT"] > recent["SUBMITTED"] > 0
    # not every (project, user) has a rate; some rate a placeholder
    pairs = {(r.parent_gid, r.resource_gid) for r in data.rates.values()}
    people = {p for p in pairs if p[1] in data.users}
    assert 0 < len(people) < len(data.projects) * len(data.users)
    assert any(p[1] in data.placeholders for p in pairs)


# --- the single GET -------------------------------------------------------------------


def test_the_single_get_gives_every_field(asana_server):
    data = asana_server.dataset
    with_categories = next(e for e in data.entries.values() if len(e.categories) == 2)
    for entry in (with_categories, next(iter(data.entries.values()))):
        got = one(asana_server, entry.gid).json()["data"]
        assert got["task"] == {"gid": entry.task_gid, "resource_type": "task",
                               "name": data.tasks[entry.task_gid][0]}
        made = dt.datetime.strptime(got["created_at"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert made == entry.created_at and got["created_at"].endswith("Z")
        assert got["billable_status"] == entry.billable_status
        assert got["approval_status"] == data.timesheet(entry.user_gid, entry.entered_on).approval_status
        assert got["approval_status"] in APPROVAL_STATUSES
        assert got["description"] == entry.description
        assert got["categories"] == [
            {"gid": g, "resource_type": "time_tracking_category",
             "name": data.categories[g].name, "color": data.categories[g].color}
            for g in entry.categories]
        assert got["entered_on"] == entry.entered_on.isoformat()
        assert got["created_by"]["name"] == data.users[entry.user_gid]
    # compact objects as asked: the category's gid alone
    got = one(asana_server, with_categories.gid, "categories").json()["data"]
    assert got == {"gid": with_categories.gid, "resource_type": "time_tracking_entry",
                   "categories": [{"gid": g, "resource_type": "time_tracking_category"}
                                  for g in with_categories.categories]}


def test_the_single_get_of_a_deleted_entry_is_a_404(asana_server):
    gid = next(iter(asana_server.dataset.entries))
    assert one(asana_server, gid).status_code == 200
    asana_server.dataset.delete_entry(gid)
    gone = one(asana_server, gid)
    assert gone.status_code == 404 and message(gone).endswith(gid)


# --- the list's answer to fields it does not document ------------------------------------


def test_the_list_ignores_extra_fields_by_default(asana_server):
    assert asana_server.list_extra_fields == "ignore"
    page = listing(asana_server, COMPACT + ",categories.name," + ",".join(EXTRA)).json()["data"]
    assert page and all(not set(EXTRA) & e.keys() for e in page)
    assert all("entered_on" in e and "categories" in e for e in page)


def test_the_list_can_refuse_extra_fields(asana_server):
    asana_server.list_extra_fields = "refuse"
    for field in EXTRA:
        refused = listing(asana_server, f"{COMPACT},{field}", limit=1)
        assert refused.status_code == 400
        assert message(refused).startswith("opt_fields:") and field in message(refused)
        assert "offset" not in message(refused)  # not to be taken for an expired offset
    # what it documents it gives, categories among them
    page = listing(asana_server, COMPACT + ",categories,categories.name,categories.color")
    assert page.status_code == 200 and all("categories" in e for e in page.json()["data"])
    assert listing(asana_server, "gid", limit=1).status_code == 200


def test_the_list_can_return_extra_fields_as_the_single_get_does(asana_server):
    asana_server.list_extra_fields = "return"
    fields = COMPACT + ",categories,categories.name," + ",".join(EXTRA) + ",task.name"
    page = listing(asana_server, fields).json()["data"]
    assert page
    for entry in page:
        assert entry == one(asana_server, entry["gid"], fields).json()["data"]


def test_categories_on_the_list_follow_the_entry(asana_server):
    data = asana_server.dataset
    page = listing(asana_server, "categories,categories.name,categories.color").json()["data"]
    for entry in page:
        assert [c["gid"] for c in entry["categories"]] == list(data.entries[entry["gid"]].categories)
        assert all(c.keys() == {"gid", "resource_type", "name", "color"}
                   for c in entry["categories"])


# --- without the Timesheets & Budgets add-on -------------------------------------------


def test_without_the_addon(asana_server):
    data = asana_server.dataset
    asana_server.addon = False
    asana_server.list_extra_fields = "return"
    gid = next(g for g, e in data.entries.items() if e.categories and e.description)
    got = one(asana_server, gid).json()["data"]
    assert not {"billable_status", "description", "categories"} & got.keys()
    assert {"task", "created_at", "approval_status", "entered_on"} <= got.keys()
    page = listing(asana_server, COMPACT + ",categories.name," + ",".join(EXTRA)).json()["data"]
    assert page and all(not {"billable_status", "description", "categories"} & e.keys()
                        for e in page)
    refused = {"/time_tracking_categories": 403, "/timesheet_approval_statuses": 402,
               "/rates": 402}
    for path, status in refused.items():
        answer = get(asana_server, path, workspace=data.workspace_gid,
                     parent=next(iter(data.projects)), limit=10)
        assert answer.status_code == status
        assert "Timesheets & Budgets" in message(answer)
        assert answer.json()["errors"][0]["help"].startswith("For more information")
    asana_server.addon = True  # the same data, with the add-on
    assert "billable_status" in one(asana_server, gid).json()["data"]


# --- categories -----------------------------------------------------------------------


def test_categories_listing(asana_server):
    data = asana_server.dataset
    live = every_page(asana_server, "/time_tracking_categories", workspace=data.workspace_gid)
    assert [c["gid"] for c in live] == [g for g, c in data.categories.items() if not c.is_archived]
    archived = every_page(asana_server, "/time_tracking_categories",
                          workspace=data.workspace_gid, is_archived="true")
    assert archived and all(c["is_archived"] for c in archived)
    assert {c["gid"] for c in live + archived} == set(data.categories)
    for c in live + archived:
        assert c == {"gid": c["gid"], "resource_type": "time_tracking_category",
                     "name": data.categories[c["gid"]].name,
                     "color": data.categories[c["gid"]].color,
                     "is_archived": data.categories[c["gid"]].is_archived}
    unpaged = get(asana_server, "/time_tracking_categories", workspace=data.workspace_gid).json()
    assert unpaged["data"] == live and "next_page" not in unpaged
    explicit = get(asana_server, "/time_tracking_categories", workspace=data.workspace_gid,
                   is_archived="false").json()
    assert explicit["data"] == live


def test_categories_errors(asana_server):
    data = asana_server.dataset
    path = "/time_tracking_categories"
    assert message(get(asana_server, path)).startswith("workspace:")
    assert get(asana_server, path).status_code == 400
    assert get(asana_server, path, workspace="123").status_code == 404
    assert get(asana_server, path, workspace="x1").status_code == 400
    assert get(asana_server, path, workspace=data.workspace_gid, is_archived="maybe").status_code == 400
    assert get(asana_server, path, workspace=data.workspace_gid, limit=101).status_code == 400
    asana_server.forbidden.add(data.workspace_gid)
    assert get(asana_server, path, workspace=data.workspace_gid).status_code == 403


# --- timesheet approval statuses -------------------------------------------------------


def test_timesheets_listing(asana_server):
    data = asana_server.dataset
    user = next(iter(data.users))
    since = dt.date(2026, 6, 3)  # a Wednesday: its week is listed
    got = every_page(asana_server, "/timesheet_approval_statuses",
                     workspace=data.workspace_gid, user=user, from_date=since.isoformat())
    expected = sorted((s for s in data.timesheets.values()
                       if s.user_gid == user and s.end_date >= since), key=lambda s: s.start_date)
    assert [t["gid"] for t in got] == [s.gid for s in expected] and got
    for item, sheet in zip(got, expected):
        assert item == {"gid": sheet.gid, "resource_type": "timesheet_approval_status",
                        "user": {"gid": user, "resource_type": "user", "name": data.users[user]},
                        "start_date": sheet.start_date.isoformat(),
                        "end_date": sheet.end_date.isoformat(),
                        "approval_status": sheet.approval_status}
        assert dt.date.fromisoformat(item["start_date"]).weekday() == 0
        assert item["approval_status"] in APPROVAL_STATUSES
    until = dt.date(2026, 6, 30)
    bounded = every_page(asana_server, "/timesheet_approval_statuses",
                         workspace=data.workspace_gid, user=user, from_date=since.isoformat(),
                         to_date=until.isoformat())
    assert bounded and all(t["start_date"] <= until.isoformat() for t in bounded)
    assert len(bounded) < len(got)
    everyone = every_page(asana_server, "/timesheet_approval_statuses",
                          workspace=data.workspace_gid)
    assert len(everyone) == len(data.timesheets)


def test_timesheets_in_lower_case_as_the_endpoint_first_spoke(asana_server):
    data = asana_server.dataset
    asana_server.approval_case = "lower"
    user = next(iter(data.users))
    got = get(asana_server, "/timesheet_approval_statuses", workspace=data.workspace_gid,
              user=user, from_date="2026-01-01", limit=100).json()["data"]
    assert got and all(t["approval_status"] in {s.lower() for s in APPROVAL_STATUSES} for t in got)
    # entries stay upper case
    gid = next(g for g, e in data.entries.items() if e.user_gid == user)
    assert one(asana_server, gid, "approval_status").json()["data"]["approval_status"].isupper()


def test_timesheets_errors(asana_server):
    data = asana_server.dataset
    path = "/timesheet_approval_statuses"
    assert get(asana_server, path, user=next(iter(data.users))).status_code == 400
    assert get(asana_server, path, workspace=data.workspace_gid, user="999").status_code == 404
    bad = get(asana_server, path, workspace=data.workspace_gid, from_date="2026-02-30")
    assert bad.status_code == 400 and message(bad).startswith("from_date:")


# --- rates ----------------------------------------------------------------------------


def test_rates_listing(asana_server):
    data = asana_server.dataset
    for project in data.projects:
        got = every_page(asana_server, "/rates", parent=project)
        expected = [r for r in data.rates.values() if r.parent_gid == project]
        assert [r["gid"] for r in got] == [r.gid for r in expected]
        for item, rate in zip(got, expected):
            person = rate.resource_gid in data.users
            assert item == {
                "gid": rate.gid, "resource_type": "rate",
                "parent": {"gid": project, "resource_type": "project", "name": data.projects[project]},
                "resource": {"gid": rate.resource_gid,
                             "resource_type": "user" if person else "placeholder",
                             "name": (data.users if person else data.placeholders)[rate.resource_gid]},
                "rate": rate.rate, "currency_code": "USD"}
            assert isinstance(item["rate"], float)
    assert get(asana_server, "/rates").status_code == 400
    assert get(asana_server, "/rates", parent=next(iter(data.users))).status_code == 404


# --- edits while the server runs ---------------------------------------------------------


def test_detail_edits_are_seen_by_the_single_get_not_by_a_compact_list(asana_server):
    data = asana_server.dataset
    user = next(iter(data.users))
    gid = next(g for g, e in data.entries.items() if e.user_gid == user)
    before = listing(asana_server, COMPACT, user=user).content
    with_categories = listing(asana_server, "categories", user=user).json()["data"]
    one(asana_server, gid)  # served once: cached
    new = data.add_category("Overtime 🌙", "magenta")
    data.edit_entry(gid, billable_status="nonBillable", description="Réécrit « ici »",
                    categories=[new.gid])
    got = one(asana_server, gid).json()["data"]
    assert got["billable_status"] == "nonBillable" and got["description"] == "Réécrit « ici »"
    assert got["categories"] == [{"gid": new.gid, "resource_type": "time_tracking_category",
                                  "name": "Overtime 🌙", "color": "magenta"}]
    assert listing(asana_server, COMPACT, user=user).content == before
    after = listing(asana_server, "categories", user=user).json()["data"]
    assert after != with_categories
    assert next(e for e in after if e["gid"] == gid)["categories"] == [
        {"gid": new.gid, "resource_type": "time_tracking_category"}]
    with pytest.raises(ValueError):
        data.edit_entry(gid, billable_status="maybe")
    with pytest.raises(KeyError):
        data.edit_entry(gid, categories=["404"])


def test_a_week_approved_then_recalled(asana_server):
    data = asana_server.dataset
    asana_server.list_extra_fields = "return"
    entry = next(iter(data.entries.values()))
    week = monday(entry.entered_on)
    sheets = {"workspace": data.workspace_gid, "user": entry.user_gid,
              "from_date": week.isoformat(), "to_date": week.isoformat()}

    def seen() -> tuple[str, str, str]:
        sheet = get(asana_server, "/timesheet_approval_statuses", **sheets).json()["data"]
        page = listing(asana_server, "approval_status", user=entry.user_gid,
                       entered_on_start_date=entry.entered_on.isoformat(),
                       entered_on_end_date=entry.entered_on.isoformat()).json()["data"]
        listed = next(e for e in page if e["gid"] == entry.gid)
        return (sheet[0]["approval_status"], listed["approval_status"],
                one(asana_server, entry.gid).json()["data"]["approval_status"])

    data.set_approval_status(entry.user_gid, entry.entered_on, "APPROVED")
    assert seen() == ("APPROVED",) * 3
    data.set_approval_status(entry.user_gid, week + dt.timedelta(days=6), "SUBMITTED")
    assert seen() == ("SUBMITTED",) * 3
    with pytest.raises(ValueError):
        data.set_approval_status(entry.user_gid, week, "LOST")


def test_an_entry_in_a_new_week_makes_a_draft_timesheet(asana_server):
    data = asana_server.dataset
    user, task = next(iter(data.users)), next(iter(data.tasks))
    day = dt.date(2027, 3, 3)
    entry = data.add_entry(task, user, 30, day, description="new")
    sheet = data.timesheet(user, day)
    assert sheet is not None and sheet.approval_status == "DRAFT"
    got = one(asana_server, entry.gid).json()["data"]
    assert got["approval_status"] == "DRAFT" and got["description"] == "new"
    assert got["created_at"].endswith("Z") and got["categories"] == []
    listed = get(asana_server, "/timesheet_approval_statuses", workspace=data.workspace_gid,
                 user=user, from_date="2027-03-01").json()["data"]
    assert [t["gid"] for t in listed] == [sheet.gid]


def test_category_edits(asana_server):
    data = asana_server.dataset
    workspace = {"workspace": data.workspace_gid}
    gid = next(g for g, c in data.categories.items() if not c.is_archived)
    carrier = next(e for e in data.entries.values() if gid in e.categories)
    one(asana_server, carrier.gid)  # cached
    data.edit_category(gid, name="Renamed ✏️", color="yellow")
    shown = one(asana_server, carrier.gid).json()["data"]["categories"]
    assert {"gid": gid, "resource_type": "time_tracking_category", "name": "Renamed ✏️",
            "color": "yellow"} in shown
    data.archive_category(gid)
    live = every_page(asana_server, "/time_tracking_categories", **workspace)
    archived = every_page(asana_server, "/time_tracking_categories", **workspace, is_archived="true")
    assert gid not in {c["gid"] for c in live} and gid in {c["gid"] for c in archived}
    assert gid in {c["gid"] for c in one(asana_server, carrier.gid).json()["data"]["categories"]}
    data.delete_category(gid)
    assert gid not in {c["gid"] for c in every_page(asana_server, "/time_tracking_categories",
                                                     **workspace, is_archived="true")}
    assert gid not in {c["gid"] for c in one(asana_server, carrier.gid).json()["data"]["categories"]}
    added = data.add_category("Brand new", "green")
    assert added.gid in {c["gid"] for c in every_page(asana_server, "/time_tracking_categories",
                                                       **workspace)}


def test_rate_edits(asana_server):
    data = asana_server.dataset
    rate = next(iter(data.rates.values()))
    data.edit_rate(rate.gid, rate=99.5, currency_code="EUR")
    got = {r["gid"]: r for r in every_page(asana_server, "/rates", parent=rate.parent_gid)}
    assert got[rate.gid]["rate"] == 99.5 and got[rate.gid]["currency_code"] == "EUR"
    placeholder = data.add_placeholder("Analyst (placeholder)")
    added = data.add_rate(rate.parent_gid, placeholder, 60)
    data.delete_rate(rate.gid)
    got = {r["gid"]: r for r in every_page(asana_server, "/rates", parent=rate.parent_gid)}
    assert rate.gid not in got
    assert got[added.gid]["resource"] == {"gid": placeholder, "resource_type": "placeholder",
                                          "name": "Analyst (placeholder)"}


# --- the new listings page as the entries' do --------------------------------------------


def test_offsets_and_faults_on_the_new_listings(asana_server):
    data = asana_server.dataset
    query = {"workspace": data.workspace_gid, "limit": 2}
    offset = get(asana_server, "/time_tracking_categories", **query).json()["next_page"]["offset"]
    other = get(asana_server, "/timesheet_approval_statuses", **query, offset=offset)
    assert other.status_code == 400 and message(other).startswith("offset:")
    asana_server.offset_ttl = 0
    expired = get(asana_server, "/time_tracking_categories", **query, offset=offset)
    assert expired.status_code == 400 and message(expired).startswith("offset:")
    asana_server.add_fault(500, when=lambda path, params: path.endswith("/rates"))
    failed = get(asana_server, "/rates", parent=next(iter(data.projects)))
    assert failed.status_code == 500 and failed.json()["errors"][0]["phrase"]
    asana_server.payment_required = True  # no time tracking at all: everything 402
    assert get(asana_server, "/time_tracking_categories", **query).status_code == 402


# --- on its own --------------------------------------------------------------------------


def test_python_m_etl_simulator_takes_the_switches():
    process = subprocess.Popen(
        [sys.executable, "-m", "etl.simulator", "--entries", "200", "--no-addon",
         "--list-extra-fields", "refuse", "--approval-case", "lower"],
        stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline())
        assert info["addon"] is False and info["list_extra_fields"] == "refuse"
        assert info["approval_case"] == "lower" and info["entries"] == 200
        headers = {"Authorization": f"Bearer {info['token']}"}
        base = info["base_url"]
        assert requests.get(f"{base}/time_tracking_categories", headers=headers, timeout=5,
                            params={"workspace": info["workspace"]}).status_code == 403
        refused = requests.get(f"{base}/time_tracking_entries", headers=headers, timeout=5,
                               params={"user": info["users"][0], "opt_fields": "task"})
        assert refused.status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_server_shows_the_switches_it_starts_with():
    server = AsanaSimulator(Dataset.generate(entries=5))
    try:
        assert (server.addon, server.list_extra_fields, server.approval_case) == (
            True, "ignore", "upper")
    finally:
        server._server.server_close()
