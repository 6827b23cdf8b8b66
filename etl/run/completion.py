"""A scope's end: once every listing of it completed in full and was loaded, its
deletion check; then its final status.

Asana has no deletion feed: an entry linked to a scope, within the days the run read,
that the pass did not see is a candidate, confirmed with one request each
(`etl.run.deletions`). Candidates go to the fetcher a batch at a time, in gid order,
each batch after the last was answered, so that neither side holds them all. A scope
whose listing failed deletes nothing: it only records why it failed.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from etl.asana.client import CallStats
from etl.config import DateWindow, Scope
from etl.errors import AsanaError, AuthError
from etl.run.fetcher import Fetcher
from etl.run.messages import ConfirmDone, ScopeListed
from etl.run.record import RunRecord, describe_error
from etl.run.result import ScopeResult
from etl.store import runs
from etl.store.links import deletion_candidates
from etl.wording import count

log = logging.getLogger(__name__)

#: Deletion candidates in one order to the fetcher (it confirms them side by side).
CONFIRM_BATCH = 2000


class ScopeCompletion:
    """Takes the fetcher's word that a scope's listings (or a batch of its confirmations)
    ended, and moves the scope on: to its next candidates, or to its final status."""

    def __init__(self, engine: sa.Engine, fetcher: Fetcher, record: RunRecord,
                 windows: dict[Scope, DateWindow], results: dict[Scope, ScopeResult]) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self.record = record
        self.windows = windows
        self.results = results
        #: the scopes whose row has its final status
        self.closed: set[Scope] = set()
        #: scope -> its calls so far, as the fetcher last reported them
        self.stats = {scope: CallStats() for scope in results}
        #: scope -> the last deletion candidate ordered confirmed
        self._confirming: dict[Scope, str] = {}

    def is_open(self, scope: Scope) -> bool:
        return self.results[scope].status == runs.RUNNING

    def handle(self, message: ScopeListed | ConfirmDone) -> bool:
        """Act on the end of a scope's listings or of a batch of its confirmations;
        True when that closes the scope.

        Raises:
            AuthError: Asana refused the token or the plan: the whole run stops.
            Exception: a bug (not an Asana error) in the fetcher: so does the run.
        """
        result = self.results[message.scope]
        self.stats[message.scope] = message.scope_stats
        if isinstance(message, ScopeListed):
            result.listings, result.restarts = message.listings, message.restarts
        error = message.error
        if error is None:
            # every listing is complete and loaded: only now may what they lacked count
            # as deleted; candidates go to Asana a batch at a time, each after the last
            after = self._confirming.get(message.scope) if isinstance(message, ConfirmDone) else None
            if self._confirm(message.scope, after):
                return False
            result.status = runs.SUCCEEDED
            self._log_success(result, message.scope_stats)
        else:
            result.status, result.error = runs.FAILED, describe_error(error)
        self.close(result)
        if isinstance(error, AuthError) or not isinstance(error, (AsanaError, type(None))):
            raise error  # a refused token, or a bug: the whole run stops
        if error is not None:
            log.error("scope %s failed: %s", result.scope, result.error,
                      extra={"event": "scope_failed", "scope": str(result.scope),
                             "fields": {"error": result.error}})
        return True

    def close(self, result: ScopeResult) -> None:
        """Write the scope's final status (already in `result`)."""
        self.record.close_scope(result, self.stats[result.scope])
        self.closed.add(result.scope)

    def fail_unfinished(self, exc: BaseException) -> list[ScopeResult]:
        """The run stopped: every scope without its final status failed with it."""
        unfinished = [r for r in self.results.values() if r.scope not in self.closed]
        for result in unfinished:
            result.status, result.error = runs.FAILED, describe_error(exc)
        return unfinished

    def _confirm(self, scope: Scope, after: str | None) -> bool:
        """Order the confirmation of `scope`'s next deletion candidates (in gid order,
        after `after`, within the scope's window); False when none are left."""
        with self.engine.connect() as conn:
            gids = deletion_candidates(conn, self.record.run_id, scope, self.windows[scope],
                                       CONFIRM_BATCH, after)
        if not gids:
            return False
        self._confirming[scope] = gids[-1]
        self.fetcher.confirm(scope, gids)
        return True

    @staticmethod
    def _log_success(result: ScopeResult, stats: CallStats) -> None:
        c = result.counts
        log.info(
            "scope %s: %s in %s, %s (%d inserted, %d updated, %d unchanged, %d deleted, "
            "%d rejected)",
            result.scope, count(result.pages, "page"), count(result.listings, "listing"),
            count(c.entries, "entry"), c.inserted, c.updated, c.unchanged, c.deleted,
            c.rejected,
            extra={"event": "scope_finished", "scope": str(result.scope),
                   "fields": {"status": "succeeded", "pages": result.pages,
                              "listings": result.listings, "requests": stats.requests,
                              **vars(c)}},
        )
