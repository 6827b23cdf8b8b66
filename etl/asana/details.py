"""What the list of entries does not return: an entry's details, by the single GET, and
the one request that tells whether the list returns them anyway.

The list documents only a compact set of `opt_fields`; `task`, `created_at`,
`approval_status`, `billable_status` and `description` are documented on
`GET /time_tracking_entries/{gid}` alone. Asked for them anyway, the list may ignore
them, refuse them (a 400 naming `opt_fields`), or return them: `probe_list` asks once,
with `limit=1`, and a run reads them from the pages where it can, one request an entry
where it cannot.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Literal

from etl.asana.client import AsanaClient, CallStats
from etl.asana.extract import (
    ENTRIES_PATH,
    OPT_FIELDS,
    Preflight,
    fetch_entry,
    first_day,
    preflight,
    scope_params,
)
from etl.config import Scope
from etl.errors import AuthError, AsanaError, RequestRejectedError
from etl.transform import ADDON_FIELDS, DETAIL_FIELDS

log = logging.getLogger(__name__)

#: What the list does with the details' `opt_fields`.
ListAnswer = Literal["returned", "ignored", "refused", "unknown"]

#: The fields asked for: the list's own, and the details.
DETAIL_OPT_FIELDS = OPT_FIELDS + "," + ",".join(DETAIL_FIELDS)
#: A list answer carries the details when its entries have these (the add-on's may be
#: absent all the same).
_LISTED = ("task", "created_at", "approval_status")


def fetch_details(client: AsanaClient, gid: str, stats: CallStats | None = None
                  ) -> dict[str, Any] | None:
    """One entry with its details, or None when Asana answers 404 (it was deleted).

    Raises:
        RequestRejectedError: 403 (the token may not see it), 400, or an answer with no
            `data` object.
    """
    return fetch_entry(client, gid, stats, opt_fields=DETAIL_OPT_FIELDS)


def preflight_details(client: AsanaClient, scope: Scope) -> Preflight:
    """The run's preflight (`extract.preflight`) asking the list for the details' fields
    too, so that one request tells both: whether Asana takes the token and plan, and what
    the list does with those fields. Only a refusal (a 400 naming `opt_fields`) costs a
    second, plain request.

    Raises:
        AuthError: 401 or 402.
    """
    started = time.monotonic()
    try:
        body = client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1,
                                         "opt_fields": "entered_on," + ",".join(DETAIL_FIELDS)})
    except AuthError:
        raise
    except RequestRejectedError as exc:
        if exc.status == 400 and "opt_fields" in exc.message:
            return dataclasses.replace(preflight(client, scope),
                                       details=_said("refused", exc.message))
        return Preflight(time.monotonic() - started, details=_said("unknown", exc.message))
    except AsanaError as exc:
        return Preflight(time.monotonic() - started, details=_said("unknown", exc.message))
    latency = time.monotonic() - started
    answer = _answer(body)
    if answer == "returned" and _partly(client, body["data"][0]):
        answer = _said("ignored", "it leaves out fields the single GET gives")
    return Preflight(latency, first_day(body), answer)


def _partly(client: AsanaClient, listed: dict[str, Any]) -> bool:
    """Whether a list that returns the details leaves out some the add-on gives (the
    single GET of the same entry has them): then it cannot stand for the single GET.
    One request, and only where the list lacks an add-on field."""
    lacking = [f for f in ADDON_FIELDS if f not in listed]
    if not lacking or not isinstance(listed.get("gid"), str):
        return False
    try:
        alone = fetch_details(client, listed["gid"])
    except AsanaError:
        return False
    return alone is not None and any(f in alone for f in lacking)


def probe_list(client: AsanaClient, scope: Scope) -> ListAnswer:
    """Ask the list of `scope` for one entry with its details: whether it returns them,
    ignores them or refuses them (`unknown`: the scope has no entry to tell by, or the
    request failed otherwise, which the scope's own listing then reports).

    Raises:
        AuthError: 401 or 402.
    """
    try:
        body = client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1,
                                         "opt_fields": DETAIL_OPT_FIELDS})
    except AuthError:
        raise
    except RequestRejectedError as exc:
        if exc.status == 400 and "opt_fields" in exc.message:
            return _said("refused", exc.message)
        return _said("unknown", exc.message)
    except AsanaError as exc:
        return _said("unknown", exc.message)
    return _answer(body)


def _answer(body: dict[str, Any]) -> ListAnswer:
    """What a list's answer to the details' fields says of them."""
    data = body.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return _said("unknown", "the scope has no entry to tell by")
    return _said("returned" if all(f in data[0] for f in _LISTED) else "ignored")


def _said(answer: ListAnswer, why: str | None = None) -> ListAnswer:
    log.debug("the list %s the details' fields%s", answer, f" ({why})" if why else "",
              extra={"event": "details_probe", "fields": {"answer": answer}})
    return answer
