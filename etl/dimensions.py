"""What lives around the entries, raw → row (pure, no I/O): a time tracking category, a
week's timesheet approval status, an hourly rate; and the categories an entry carries.

Anything that is not one raises `RecordRejected` with a reason: the record is set aside
(logged), never a crash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict

from etl.transform import RecordRejected

MAX_TEXT = 1_000_000


class CategoryRow(TypedDict):
    gid: str
    name: str | None
    color: str | None
    is_archived: bool


class TimesheetRow(TypedDict):
    gid: str
    user_gid: str
    start_date: dt.date
    end_date: dt.date
    approval_status: str


class RateRow(TypedDict):
    gid: str
    parent_gid: str
    resource_gid: str
    rate: float | None
    currency_code: str | None


def to_category(raw: Any) -> CategoryRow:
    obj = _object(raw, "category")
    color = obj.get("color")
    archived = obj.get("is_archived", False)
    if not isinstance(archived, bool):
        raise RecordRejected(f"is_archived is not true or false: {archived!r:.40}")
    return CategoryRow(gid=_gid(obj.get("gid"), "gid"), name=_text(obj.get("name"), "name"),
                       color=_short(color, "color", 32), is_archived=archived)


def to_timesheet(raw: Any) -> TimesheetRow:
    """A week's approval status, in upper case whatever case Asana sends (it has sent
    both)."""
    obj = _object(raw, "timesheet approval status")
    status = obj.get("approval_status")
    stored = status.upper() if isinstance(status, str) else None  # an "ß" becomes "SS"
    if stored is None or not 0 < len(stored) <= 16 or not stored.isprintable():
        raise RecordRejected(f"approval_status is not a status: {status!r:.40}")
    return TimesheetRow(gid=_gid(obj.get("gid"), "gid"),
                        user_gid=_gid(_compact_gid(obj, "user"), "user.gid"),
                        start_date=_day(obj.get("start_date"), "start_date"),
                        end_date=_day(obj.get("end_date"), "end_date"),
                        approval_status=stored)


def to_rate(raw: Any) -> RateRow:
    obj = _object(raw, "rate")
    rate = obj.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                             or not -1e12 < rate < 1e12):
        raise RecordRejected(f"rate is not a number: {rate!r:.40}")
    return RateRow(gid=_gid(obj.get("gid"), "gid"),
                   parent_gid=_gid(_compact_gid(obj, "parent"), "parent.gid"),
                   resource_gid=_gid(_compact_gid(obj, "resource"), "resource.gid"),
                   # as the columns keep it (6 decimals): else a rate with more would
                   # look changed, and be written again, on every run
                   rate=None if rate is None else round(float(rate), 6),
                   currency_code=_short(obj.get("currency_code"), "currency_code", 8))


def entry_categories(raw: dict[str, Any]) -> tuple[str, ...] | None:
    """The gids of the categories an entry carries (None: the answer does not say, as
    without the Timesheets & Budgets add-on)."""
    value = raw.get("categories")
    if value is None:
        return None
    if not isinstance(value, list):
        raise RecordRejected("categories is not a list")
    return tuple(dict.fromkeys(_gid(_compact_gid({"c": c}, "c"), "categories.gid")
                               for c in value))


def _object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordRejected(f"{what} is not an object")
    return raw


def _gid(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 64:
        raise RecordRejected(f"{field} is not a gid: {value!r:.40}")
    return value


def _compact_gid(obj: dict[str, Any], field: str) -> Any:
    value = obj.get(field)
    return value.get("gid") if isinstance(value, dict) else None


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_TEXT:
        raise RecordRejected(f"{field} is not text a database can store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordRejected(f"{field} is not valid Unicode") from None
    return value


def _short(value: Any, field: str, length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > length or not value.isprintable():
        raise RecordRejected(f"{field} is not a short code: {value!r:.40}")
    return value


def _day(value: Any, field: str) -> dt.date:
    try:
        if isinstance(value, str) and len(value) == 10:
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise RecordRejected(f"{field} is not a YYYY-MM-DD date: {value!r:.40}")
