"""Raw API entry → flat row for `time_tracking_entries` (pure, no I/O).

Anything that is not a valid entry raises `RecordRejected` with a reason; the pipeline
puts it in `rejected_records`, so a bad record never stops a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import orjson


class RawCompact(TypedDict):
    gid: str
    resource_type: NotRequired[str]
    name: NotRequired[str | None]


class RawEntry(TypedDict):
    """A time tracking entry as the endpoint returns it with our `opt_fields`."""

    gid: str
    resource_type: NotRequired[str]
    duration_minutes: int
    entered_on: str
    attributable_to: NotRequired[RawCompact | None]
    created_by: NotRequired[RawCompact | None]


class CanonicalJSON(str):
    """JSON text already serialised canonically (sorted keys, no spaces): stored as is."""

    __slots__ = ()


class EntryRow(TypedDict):
    """The content columns of `time_tracking_entries` (bookkeeping columns are the loader's)."""

    gid: str
    duration_minutes: int
    entered_on: dt.date
    attributable_to_gid: str | None
    attributable_to_name: str | None
    created_by_gid: str | None
    created_by_name: str | None
    raw: CanonicalJSON
    content_hash: str


#: The columns that make up an entry's content. Every one of them derives from `raw`, so
#: `content_hash` (a digest of the canonical `raw`) changes exactly when one of them does.
CONTENT_COLUMNS = (
    "duration_minutes",
    "entered_on",
    "attributable_to_gid",
    "attributable_to_name",
    "created_by_gid",
    "created_by_name",
    "raw",
    "content_hash",
)

#: The order of `RowValues`: the loader's tuple form of a row.
VALUE_COLUMNS = ("gid", *CONTENT_COLUMNS)
#: A row as the loader takes it: `VALUE_COLUMNS` in order, `entered_on` as ISO text.
RowValues = tuple[str, int, str, str | None, str | None, str | None, str | None, str, str]
#: Where the content hash sits in `RowValues`.
HASH = VALUE_COLUMNS.index("content_hash")

MAX_GID_LENGTH = 64
MAX_DURATION_MINUTES = 2**31 - 1


class RecordRejected(ValueError):
    """This record cannot become a row; `str(exc)` is the reason."""


@dataclass(frozen=True)
class Rejection:
    """A record set aside: its gid (when it had a usable one), why, and the record as
    received (JSON text), for `rejected_records`."""

    entry_gid: str | None
    reason: str
    payload: str


def to_row(raw: Any) -> EntryRow:
    """Flatten one raw entry into a row.

    Raises:
        RecordRejected: missing or mistyped `gid`, `entered_on` or `duration_minutes`,
            a malformed `attributable_to`/`created_by`, or text a database cannot store.
    """
    if not isinstance(raw, dict):
        raise RecordRejected(f"entry is {_kind(raw)}, not an object")
    gid = _gid(raw.get("gid"), "gid")
    attributable_gid, attributable_name = _compact(raw, "attributable_to")
    created_gid, created_name = _compact(raw, "created_by")
    data = _canonical(raw)
    return EntryRow(
        gid=gid,
        duration_minutes=_duration(raw.get("duration_minutes", _MISSING)),
        entered_on=_day(raw.get("entered_on", _MISSING))[0],
        attributable_to_gid=attributable_gid,
        attributable_to_name=attributable_name,
        created_by_gid=created_gid,
        created_by_name=created_name,
        raw=CanonicalJSON(data.decode()),
        content_hash=_digest(data),
    )


def listed_row(raw: Any) -> tuple[RowValues, dt.date]:
    """`row_values(to_row(raw))` and the entry's day, in one go: what a listing's page
    makes of each entry (the hot path of reading, twice as fast). The same checks in
    the same order, so the same reasons; the row's `raw` a plain string.

    Raises:
        RecordRejected: as `to_row`.
    """
    if type(raw) is not dict:
        return row_values(row := to_row(raw)), row["entered_on"]
    gid = raw.get("gid")
    if not (type(gid) is str and gid.isdigit() and gid.isascii() and len(gid) <= MAX_GID_LENGTH):
        gid = _gid(gid, "gid")
    attributable_gid, attributable_name = _listed_compact(raw, "attributable_to")
    created_gid, created_name = _listed_compact(raw, "created_by")
    data = _canonical(raw)
    duration = raw.get("duration_minutes", _MISSING)
    if type(duration) is not int or not 0 <= duration <= MAX_DURATION_MINUTES:
        duration = _duration(duration)
    day, iso = _day(raw.get("entered_on", _MISSING))
    return (gid, duration, iso, attributable_gid, attributable_name, created_gid, created_name,
            data.decode(), _digest(data)), day


def row_values(row: EntryRow) -> RowValues:
    """The row as the loader takes it: a plain tuple, cheap to send between processes and
    to hand to a database driver (every backend reads a YYYY-MM-DD text as a date)."""
    return (row["gid"], row["duration_minutes"], row["entered_on"].isoformat(),
            row["attributable_to_gid"], row["attributable_to_name"], row["created_by_gid"],
            row["created_by_name"], str(row["raw"]), row["content_hash"])


#: An entry's details (`[details] entries`): the columns, in the order of `DetailValues`.
DETAIL_COLUMNS = ("task_gid", "task_name", "billable_status", "approval_status", "description",
                  "created_at")
DetailValues = tuple[str | None, str | None, str | None, str | None, str | None,
                     dt.datetime | None]
#: The details only the Timesheets & Budgets add-on gives: absent from answers without it.
ADDON_FIELDS = ("billable_status", "description")
#: The details' fields as Asana names them in `opt_fields`.
DETAIL_FIELDS = ("task", "task.name", "created_at", "billable_status", "approval_status",
                 "description")
#: ... and as they come in an answer; with the categories, what an answer may carry
#: beyond the list's own fields.
DETAIL_KEYS = frozenset(field.split(".")[0] for field in DETAIL_FIELDS)
BESIDE_KEYS = DETAIL_KEYS | {"categories"}


def listed_content(raw: Any) -> Any:
    """An entry with the list's own fields alone, whatever else was asked: what its row,
    `raw` and content hash are made of. The details and the categories have columns and
    tables of their own, compared on their own; so whether a run asks for them (the list
    may return the details or not, from one run to the next; categories may be turned
    on) never changes an entry's row, nor makes every detail look due again."""
    if isinstance(raw, dict) and not BESIDE_KEYS.isdisjoint(raw):
        return {k: v for k, v in raw.items() if k not in BESIDE_KEYS}
    return raw
#: The longest statuses the columns hold (billable_status, approval_status).
MAX_BILLABLE_LENGTH, MAX_APPROVAL_LENGTH = 32, 16


def to_details(raw: Any) -> tuple[DetailValues, tuple[str, ...]]:
    """An entry's details, from an answer that carries them (the single GET, or a list
    that returns them), as column values; and which of `ADDON_FIELDS` the answer lacked
    (a workspace without the add-on: stored as null). `approval_status` is stored in
    upper case, whatever case Asana sends.

    Raises:
        RecordRejected: a detail of the wrong type, a timestamp that is not one, or text
            a database cannot store.
    """
    if not isinstance(raw, dict):
        raise RecordRejected(f"entry is {_kind(raw)}, not an object")
    task_gid, task_name = _compact(raw, "task")
    billable = _status(raw.get("billable_status"), "billable_status", MAX_BILLABLE_LENGTH)
    approval = _status(raw.get("approval_status"), "approval_status", MAX_APPROVAL_LENGTH,
                       upper=True)
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise RecordRejected(f"description is {_kind(description)}, not a string")
    for name, text in (("task.name", task_name), ("description", description)):
        if text is not None and not _storable(text):
            raise RecordRejected(f"{name} holds a NUL character or text that is not valid Unicode")
    values = (task_gid, task_name, billable, approval, description,
              _timestamp(raw.get("created_at"), "created_at"))
    return values, tuple(f for f in ADDON_FIELDS if f not in raw)


def _status(value: Any, field: str, longest: int, upper: bool = False) -> str | None:
    """A status word as it will be stored (in upper case, with `upper`): printable, and
    no longer than its column once upper-cased (an "ß" becomes "SS")."""
    if value is None:
        return None
    stored = value.upper() if upper and isinstance(value, str) else value
    if (not isinstance(stored, str) or not stored or len(stored) > longest
            or not stored.isprintable() or not _storable(stored)):
        raise RecordRejected(f"{field} is not a status: {_short(value)}")
    return stored


def _timestamp(value: Any, field: str) -> dt.datetime | None:
    """An ISO 8601 timestamp (Asana's `2026-03-02T10:15:30.123Z`) as an aware UTC datetime."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
        # (an offset that moves it past year 1 or 9999 overflows)
        utc = parsed.astimezone(dt.UTC) if parsed is not None and parsed.tzinfo else None
    except (ValueError, OverflowError):
        utc = None
    if utc is None:
        raise RecordRejected(f"{field} is not a timestamp with its time zone: {_short(value)}")
    return utc


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_MISSING = object()


def _gid(value: Any, field: str) -> str:
    if value is None or value is _MISSING:
        raise RecordRejected(f"{field} is missing")
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise RecordRejected(f"{field} is not a string of digits: {_short(value)}")
    if len(value) > MAX_GID_LENGTH:
        raise RecordRejected(f"{field} is longer than {MAX_GID_LENGTH} digits")
    return value


def _duration(value: Any) -> int:
    if value is _MISSING or value is None:
        raise RecordRejected("duration_minutes is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordRejected(f"duration_minutes is not an integer: {_short(value)}")
    if not 0 <= value <= MAX_DURATION_MINUTES:
        raise RecordRejected(f"duration_minutes is out of range: {value}")
    return value


#: Days met, by their text (a listing's entries share a few hundred): bounded.
_DAYS: dict[str, tuple[dt.date, str]] = {}
_DAYS_KEPT = 4096


def _day(value: Any) -> tuple[dt.date, str]:
    """A YYYY-MM-DD day as a date and as that text.

    Raises:
        RecordRejected: missing, not such a text, or no such day.
    """
    known = _DAYS.get(value) if type(value) is str else None
    if known is not None:
        return known
    if value is _MISSING or value is None:
        raise RecordRejected("entered_on is missing")
    # fromisoformat alone would also take "20240105" or week dates; Asana sends YYYY-MM-DD
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise RecordRejected(f"entered_on is not a YYYY-MM-DD date: {_short(value)}")
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise RecordRejected(f"entered_on is not a valid date: {_short(value)}") from None
    if len(_DAYS) >= _DAYS_KEPT:
        _DAYS.clear()
    _DAYS[value] = known = (day, day.isoformat())
    return known


def day_of(value: Any) -> dt.date | None:
    """The day of an `entered_on` value, or None if it is not a YYYY-MM-DD day."""
    try:
        return _day(value)[0]
    except RecordRejected:
        return None


def _listed_compact(raw: dict[str, Any], field: str) -> tuple[str | None, str | None]:
    """`_compact`, quicker for what Asana sends (checked alike; the others go there)."""
    value = raw.get(field)
    if value is None:
        return None, None
    if type(value) is dict:
        gid, name = value.get("gid"), value.get("name")
        if (type(gid) is str and gid.isdigit() and gid.isascii() and len(gid) <= MAX_GID_LENGTH
                and (name is None or type(name) is str)):
            if len(_SHARED) >= _SHARED_KEPT:
                _SHARED.clear()
            return _SHARED.setdefault(gid, gid), name and _SHARED.setdefault(name, name)
    return _compact(raw, field)


#: The gids and names of users and projects, one string each: a page's rows then share
#: them (a page of 100 rows pickles a user's name once, not 100 times; the loader holds
#: it once). Bounded.
_SHARED: dict[str, str] = {}
_SHARED_KEPT = 65536


def _compact(raw: dict[str, Any], field: str) -> tuple[str | None, str | None]:
    """`{gid, name}` of a compact object, or (None, None) when it is null or absent."""
    value = raw.get(field)
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise RecordRejected(f"{field} is {_kind(value)}, not an object or null")
    gid = _gid(value.get("gid"), f"{field}.gid")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise RecordRejected(f"{field}.name is {_kind(name)}, not a string")
    return gid, name


def _canonical(raw: dict[str, Any]) -> bytes:
    """The entry as canonical JSON (sorted keys, no spaces), UTF-8; refuses what no
    backend can store (NUL characters, lone surrogates).

    orjson is ~9x faster than the standard library here, the hottest spot of the load
    path; the two give the same text. Integers beyond 64 bits, which orjson refuses,
    go through the standard library.
    """
    try:
        data = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError
        if "surrogates" in str(exc):
            raise RecordRejected("entry contains text that is not valid Unicode") from None
        text = json.dumps(raw, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise RecordRejected("entry contains text that is not valid Unicode") from None
    if b"\\u0000" in data:  # NUL, escaped; PostgreSQL refuses it in text and jsonb
        raise RecordRejected("entry contains a NUL character")
    return data


def _digest(data: bytes) -> str:
    """The content hash of an entry's canonical JSON."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def rejected_payload(raw: Any) -> str:
    """The rejected record as JSON text that any backend can store."""
    try:
        text = json.dumps(raw, ensure_ascii=False, default=repr)
        text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        text = json.dumps(raw, ensure_ascii=True, default=repr)
    return text


def entry_gid(raw: Any) -> str | None:
    """The gid of a (possibly invalid) record, if it has a usable one."""
    gid = raw.get("gid") if isinstance(raw, dict) else None
    if isinstance(gid, str) and gid.isascii() and gid.isdigit() and len(gid) <= MAX_GID_LENGTH:
        return gid
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
