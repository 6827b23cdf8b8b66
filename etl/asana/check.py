"""`asana-etl check`, Asana's side: the token, the plan and every scope, one `limit=1`
request per scope, each failure reported with its fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from etl.asana.client import AsanaClient
from etl.asana.extract import ENTRIES_PATH, scope_params
from etl.config import Scope, Settings
from etl.errors import AsanaError, AuthError

FIXES = {
    401: "Asana refused the token: create a new personal access token (My settings → Apps → "
         "Developer apps) and set ASANA_ACCESS_TOKEN or [asana] token_file",
    402: "the workspace's plan has no time tracking: it needs Asana Advanced or Enterprise",
    403: "the token's user cannot see this object: share it with that user, or remove the "
         "scope from [scopes]",
    404: "no such object: check the gid (the number in the object's Asana URL) and its kind "
         "(users / projects / portfolios / tasks / workspace)",
    400: "Asana refused the request: check the gid and its kind in [scopes]",
}


@dataclass(frozen=True)
class ScopeCheck:
    scope: Scope
    ok: bool
    status: int | None = None
    message: str | None = None

    @property
    def fix(self) -> str | None:
        if self.ok:
            return None
        if self.status == 404 and "base_url" in (self.message or ""):
            return ("set [asana] base_url to the API's root, which ends in /api/1.0 "
                    "(Asana's: https://app.asana.com/api/1.0)")
        return FIXES.get(self.status or 0, "Asana could not be reached: check the network, "
                         "[asana] base_url and status.asana.com, then try again")


def check_scopes(settings: Settings) -> list[ScopeCheck]:
    """Ask Asana for one entry of every configured scope."""
    token = settings.require_token()
    results = []
    # a preflight should answer quickly: two retries, short waits
    quick = dataclasses.replace(settings.asana, max_retries=2, max_rate_limit_waits=2,
                                backoff_max_seconds=2.0)
    with AsanaClient(quick, token) as client:
        for scope in settings.scopes:
            try:
                client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1, "opt_fields": "gid"})
                results.append(ScopeCheck(scope, True))
            except AuthError as exc:
                # the same answer for every scope: no point asking again
                results.extend(ScopeCheck(s, False, exc.status, exc.message)
                               for s in settings.scopes[len(results):])
                break
            except AsanaError as exc:
                results.append(ScopeCheck(scope, False, exc.status, exc.message))
    return results


@dataclass(frozen=True)
class DetailsCheck:
    """What `[details] entries` will find: what the list does with the details' fields
    (`etl.asana.details.ListAnswer`), and which of the add-on's fields this workspace
    gives (None: no entry to tell by)."""

    list_answer: str
    missing: tuple[str, ...] | None = None
    problem: str | None = None

    @property
    def per_entry(self) -> bool:
        """Each entry's details cost a request of its own."""
        return self.list_answer != "returned"


def check_details(settings: Settings) -> DetailsCheck:
    """Ask the list of the first scope for one entry with its details, then read that
    entry alone: two requests, whatever the scopes."""
    from etl.asana.details import fetch_details, probe_list
    from etl.transform import ADDON_FIELDS

    quick = dataclasses.replace(settings.asana, max_retries=2, max_rate_limit_waits=2,
                                backoff_max_seconds=2.0)
    scope = settings.scopes[0]
    with AsanaClient(quick, settings.require_token()) as client:
        try:
            answer = probe_list(client, scope)
            body = client.get(ENTRIES_PATH, {**scope_params(scope), "limit": 1,
                                             "opt_fields": "gid"})
            data = body.get("data") or []
            if not data:
                return DetailsCheck(answer)
            entry = fetch_details(client, str(data[0].get("gid")))
        except AsanaError as exc:
            return DetailsCheck("unknown", problem=exc.message)
    if entry is None:
        return DetailsCheck(answer)
    return DetailsCheck(answer, tuple(f for f in ADDON_FIELDS if f not in entry))
