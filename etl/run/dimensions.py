"""What lives around the entries, on the run's side: which listings to read (`[details]
categories`, `timesheets`, `rates`), and what their ends mean.

- Categories: every category of the workspace, archived ones too (two listings), from
  the run's start; once both ended, a category listed in neither is marked gone.
- Timesheets: once the scopes are loaded, for every user whose entries they hold, each
  older week that can still change (not approved) and, if the user has entries in
  them, the recent weeks (an approval can be recalled), in the fewest requests: one
  listing up to now, from the oldest open week or a later one, and each open week
  before that alone (`store.dimensions.cheapest_reads`); or all of them from the user's
  first entry if some were never read.
- Rates: once the scopes are loaded, every project their entries are attributed to; a
  rate a project lists no more is gone.
A refusal (no Timesheets & Budgets add-on) is said once, in one line, with what gives
it; the run and its scopes succeed, and the tables stay as they are.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from etl.asana import resources
from etl.asana.resources import CATEGORIES, MISSING, RATES, TIMESHEETS, Resource
from etl.config import DetailsSettings, Scope
from etl.dimensions import to_category, to_rate, to_timesheet
from etl.errors import AuthError
from etl.run.fetcher import Fetcher
from etl.run.messages import ResourceListed, ResourcePage
from etl.run.writer import Writer
from etl.store import dimensions as stored
from etl.store.runs import utcnow
from etl.transform import RecordRejected

log = logging.getLogger(__name__)

_CONVERT = {CATEGORIES: (to_category, stored.upsert_categories),
            TIMESHEETS: (to_timesheet, stored.upsert_timesheets),
            RATES: (to_rate, stored.upsert_rates)}


def store_resource(conn: sa.Connection, page: ResourcePage) -> int:
    """Write a page of a listing around the entries (what cannot be a row is logged and
    left out); returns the rows written."""
    convert, upsert = _CONVERT[page.kind]
    rows = []
    for raw in page.data:
        try:
            rows.append(convert(raw))
        except RecordRejected as exc:
            log.warning("%s: a record set aside: %s", MISSING[page.kind], exc)
    if not rows:
        return 0
    if page.kind == CATEGORIES:  # filed under "<workspace>:<active or archived>"
        return upsert(conn, rows, page.key.split(":")[0])
    return upsert(conn, rows)


class DimensionsReader:
    """Orders the listings around the entries and acts on their ends; `finished` once
    every listing it ordered ended (and, if it reads timesheets or rates, once the
    scopes were loaded)."""

    def __init__(self, engine: sa.Engine, fetcher: Fetcher, writer: Writer,
                 scopes: list[Scope], settings: DetailsSettings, today: dt.date) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self.writer = writer
        self.scopes = scopes
        self.settings = settings
        self.recent = today - dt.timedelta(days=max(settings.refresh_days, 7))
        self._pending: set[tuple[str, str]] = set()
        self._listed: dict[tuple[str, str], set[str]] = {}  # gids each listing showed
        self._failed: set[str] = set()  # kinds a listing of which failed or was refused
        #: requests spent on each kind
        self.requests = {CATEGORIES: 0, TIMESHEETS: 0, RATES: 0}
        self._after_scopes = settings.timesheets or settings.rates

    @property
    def finished(self) -> bool:
        return not self._after_scopes and not self._pending

    def start(self) -> None:
        if self.settings.categories:
            workspace = self.settings.workspace
            self._order([resources.categories(workspace, archived=False),
                         resources.categories(workspace, archived=True)])

    def scope_closed(self, all_closed: bool) -> None:
        """Once every scope's entries are loaded: the timesheets and rates they need."""
        if not all_closed or not self._after_scopes:
            return
        self._after_scopes = False
        wanted: list[Resource] = []
        with self.engine.connect() as conn:
            if self.settings.timesheets:
                wanted += [resources.timesheets(self.settings.workspace, user, since, until)
                           for user, since, until in stored.weeks_to_read(
                               conn, self.scopes, self.recent, resources.PAGE_SIZE)]
            if self.settings.rates:
                wanted += [resources.rates(project)
                           for project in stored.projects_to_rate(conn, self.scopes)]
        self._order(wanted)

    def observe(self, batch: list[Any]) -> None:
        """Note the gids each listing showed (for what it no longer shows)."""
        for page in batch:
            if isinstance(page, ResourcePage):
                self._listed.setdefault((page.kind, page.key), set()).update(
                    raw["gid"] for raw in page.data
                    if isinstance(raw, dict) and isinstance(raw.get("gid"), str))

    def listed(self, message: ResourceListed) -> None:
        """A listing ended: in full (what it lacked is gone), refused, or failed.

        Raises:
            AuthError: Asana refused the token: the whole run stops.
        """
        key = (message.kind, message.key)
        self._pending.discard(key)
        self.requests[message.kind] = max(self.requests[message.kind], message.kind_requests)
        if isinstance(message.error, AuthError) and message.error.status == 401:
            raise message.error
        if message.refused is not None or message.error is not None:
            self._said(message)
            return
        if message.kind == RATES:
            listed = self._listed.pop(key, set())
            self.writer.transaction(
                lambda conn: stored.drop_unlisted_rates(conn, message.key, listed))
        elif message.kind == CATEGORIES and CATEGORIES not in self._failed and not any(
                kind == CATEGORIES for kind, _ in self._pending):
            listed = set().union(*(g for (kind, _), g in self._listed.items() if kind == CATEGORIES))
            workspace = self.settings.workspace
            self.writer.transaction(
                lambda conn: stored.mark_gone_categories(conn, workspace, listed, utcnow()))

    def by_kind(self, total: int, details: int) -> dict[str, int]:
        """The run's `total` requests by kind; `listings` is all that read the entries
        themselves (their pages, the preflight, deletion confirmations)."""
        kinds = {"details": details, **self.requests}
        return {"listings": total - sum(kinds.values()), **kinds}

    def tally(self, total: int, details: int) -> dict[str, int]:
        """The requests by kind, as `sync_runs` names them (details' aside)."""
        return {f"{kind}_requests": n for kind, n in self.by_kind(total, details).items()
                if kind != "details"}

    def _order(self, wanted: list[Resource]) -> None:
        if wanted:
            self._pending.update((r.kind, r.key) for r in wanted)
            self.fetcher.resources(wanted)

    def _said(self, message: ResourceListed) -> None:
        """Once a run a kind: what is missing, and why."""
        if message.kind in self._failed:
            return
        self._failed.add(message.kind)
        what = MISSING[message.kind]
        if message.refused is not None:
            log.warning("%s: refused by Asana (%s): they come with Asana's Timesheets & "
                        "Budgets add-on; nothing stored", what, message.refused,
                        extra={"event": "details_refused", "fields": {"kind": message.kind}})
        else:
            reason = getattr(message.error, "message", None) or str(message.error)
            log.warning("%s: a listing failed: %s (the next run reads it again)", what, reason)
