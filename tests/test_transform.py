"""Transformer: flat rows, rejections with reasons, never an exception."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.transform import (
    RecordRejected,
    listed_row,
    rejected_payload,
    row_values,
    to_details,
    to_row,
)

ENTRY = {
    "gid": "1200000000000088",
    "resource_type": "time_tracking_entry",
    "duration_minutes": 12,
    "entered_on": "2015-03-14",
    "attributable_to": {"gid": "12345", "resource_type": "project", "name": "Stuff to buy"},
    "created_by": {"gid": "67890", "resource_type": "user", "name": "Greg Sanchez"},
}


def test_a_full_entry_flattens_to_the_contract_columns():
    row = to_row(ENTRY)
    raw, content_hash = row.pop("raw"), row.pop("content_hash")
    assert json.loads(raw) == ENTRY
    assert raw == json.dumps(ENTRY, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert len(content_hash) == 32
    assert row == {
        "gid": "1200000000000088",
        "duration_minutes": 12,
        "entered_on": dt.date(2015, 3, 14),
        "attributable_to_gid": "12345",
        "attributable_to_name": "Stuff to buy",
        "created_by_gid": "67890",
        "created_by_name": "Greg Sanchez",
    }


def test_the_content_hash_changes_exactly_when_the_content_does():
    assert to_row(dict(reversed(list(ENTRY.items()))))["content_hash"] == to_row(ENTRY)["content_hash"]
    assert to_row({**ENTRY, "duration_minutes": 13})["content_hash"] != to_row(ENTRY)["content_hash"]


def test_null_attributable_to_gives_null_columns():
    row = to_row({**ENTRY, "attributable_to": None})
    assert row["attributable_to_gid"] is None and row["attributable_to_name"] is None


def test_unicode_quotes_and_long_names_pass_unchanged():
    name = 'Zoë "Zed" O\'Brien 🚀 ' + "名" * 300
    row = to_row({**ENTRY, "created_by": {"gid": "1", "name": name}})
    assert row["created_by_name"] == name


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"gid": None}, "gid is missing"),
        ({"gid": 123}, "gid is not a string of digits"),
        ({"gid": "12ab"}, "gid is not a string of digits"),
        ({"duration_minutes": None}, "duration_minutes is missing"),
        ({"duration_minutes": "12"}, "duration_minutes is not an integer"),
        ({"duration_minutes": 1.5}, "duration_minutes is not an integer"),
        ({"duration_minutes": True}, "duration_minutes is not an integer"),
        ({"duration_minutes": -1}, "duration_minutes is out of range"),
        ({"entered_on": None}, "entered_on is missing"),
        ({"entered_on": "2015-02-30"}, "entered_on is not a valid date"),
        ({"entered_on": "20150314"}, "entered_on is not a YYYY-MM-DD date"),
        ({"entered_on": 20150314}, "entered_on is not a YYYY-MM-DD date"),
        ({"attributable_to": "12345"}, "attributable_to is a string, not an object"),
        ({"attributable_to": {"name": "x"}}, "attributable_to.gid is missing"),
        ({"created_by": {"gid": "1", "name": 5}}, "created_by.name is a number, not a string"),
        ({"created_by": {"gid": "1", "name": "a\x00b"}}, "NUL character"),
        ({"created_by": {"gid": "1", "name": "\ud800"}}, "not valid Unicode"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(change, reason):
    with pytest.raises(RecordRejected, match=reason):
        to_row({**ENTRY, **change})
    with pytest.raises(RecordRejected, match=reason):
        listed_row({**ENTRY, **change})


@pytest.mark.parametrize("field", ["gid", "duration_minutes", "entered_on"])
def test_a_missing_required_field_is_rejected(field):
    raw = dict(ENTRY)
    del raw[field]
    with pytest.raises(RecordRejected, match=f"{field} is missing"):
        to_row(raw)


def test_a_record_that_is_not_an_object_is_rejected():
    with pytest.raises(RecordRejected, match="not an object"):
        to_row(["not", "an", "entry"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
entry_like = st.fixed_dictionaries(
    {},
    optional={
        "gid": st.one_of(st.from_regex(r"\A[0-9]{1,20}\Z"), json_values),
        "duration_minutes": st.one_of(st.integers(), json_values),
        "entered_on": st.one_of(st.dates().map(dt.date.isoformat), json_values),
        "attributable_to": st.one_of(
            st.none(),
            st.fixed_dictionaries({}, optional={"gid": st.from_regex(r"\A[0-9]{1,5}\Z") | json_values,
                                                "name": st.text() | json_values}),
            json_values,
        ),
        "created_by": st.one_of(
            st.fixed_dictionaries({}, optional={"gid": st.from_regex(r"\A[0-9]{1,5}\Z") | json_values,
                                                "name": st.text() | json_values}),
            json_values,
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(entry_like, json_values))
def test_any_json_becomes_a_valid_row_or_a_rejection(raw):
    try:
        row = to_row(raw)
    except RecordRejected as exc:
        assert str(exc)
        payload = rejected_payload(raw)
        payload.encode("utf-8")  # storable
        assert json.loads(payload) == raw  # the payload is kept whole
        return
    assert row["gid"].isdigit()
    assert isinstance(row["duration_minutes"], int) and row["duration_minutes"] >= 0
    assert isinstance(row["entered_on"], dt.date)
    for key in ("attributable_to_gid", "created_by_gid"):
        assert row[key] is None or row[key].isdigit()
    for key in ("attributable_to_name", "created_by_name"):
        assert row[key] is None or isinstance(row[key], str)
    assert json.loads(row["raw"]) == raw


@settings(max_examples=400, deadline=None)
@given(st.one_of(entry_like, json_values))
def test_a_listing_flattens_any_json_as_to_row_does(raw):
    """`listed_row`, the listings' quick way, gives what `to_row` gives: the same row
    values and day, or the same reason."""
    try:
        row = to_row(raw)
    except RecordRejected as exc:
        with pytest.raises(RecordRejected) as again:
            listed_row(raw)
        assert str(again.value) == str(exc)
        return
    values, day = listed_row(raw)
    assert values == row_values(row) and day == row["entered_on"]
    assert type(values[7]) is str and values[7] == row["raw"]


@pytest.mark.parametrize("field, value", [
    ("created_at", "0001-01-01T00:00:00+01:00"),  # past year 1 once in UTC
    ("created_at", "9999-12-31T23:00:00-05:00"),  # past 9999
    ("approval_status", "DRAFT\x00"),
    ("approval_status", "ß" * 16),  # 32 characters once upper-cased, for a column of 16
    ("billable_status", "billable\n"),
])
def test_details_a_database_could_not_store_are_rejected(field, value):
    with pytest.raises(RecordRejected, match=field):
        to_details({"gid": "1", "created_at": "2026-03-02T10:15:30.123Z",
                    "approval_status": "draft", "billable_status": "billable", field: value})
    values, _ = to_details({"gid": "1", "approval_status": "draft"})
    assert values[3] == "DRAFT"
