"""What crosses the pipes between a run and its fetcher process.

Orders go one way (`PreflightOrder`, `ListOrder`, `ConfirmOrder`, `DetailsOrder`,
`ResourceOrder`; None stops the process), messages the other (`Preflighted`,
`PageRows`, `ScopeListed`, `Confirmed`, `ConfirmDone`, `DetailRead`, `DetailsDone`,
`ResourcePage`, `ResourceListed`). Every message carries the client's counters as of when
it was sent, so the run always knows what its requests cost. The fetcher's log records
go on a pipe of their own (`LogLines`), never behind the pages.
Everything here pickles: the fetcher may run in a process started by `spawn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from etl.asana.client import CallStats
from etl.asana.extract import Preflight
from etl.asana.resources import Resource
from etl.config import Scope
from etl.run.plan import Listing
from etl.transform import DetailValues, Rejection, RowValues

# --- orders (run → fetcher) --------------------------------------------------------------


@dataclass(frozen=True)
class PreflightOrder:
    """One `limit=1` request of `scope` (see `Fetcher.preflight`); with `details`, a
    second that asks the list for the entries' details."""

    scope: Scope
    details: bool = False


@dataclass(frozen=True)
class ListOrder:
    """Read these listings: the windows of each scope partition what the run reads of it."""

    listings: list[Listing]


@dataclass(frozen=True)
class ConfirmOrder:
    """Ask Asana about each of these deletion candidates of `scope`."""

    scope: Scope
    gids: list[str]


@dataclass(frozen=True)
class DetailsOrder:
    """Read these entries' details, one request each."""

    gids: list[str]


@dataclass(frozen=True)
class ResourceOrder:
    """Read these listings of what lives around the entries (categories, timesheets,
    rates), a page at a time."""

    resources: list[Resource]


# --- messages (fetcher → run) ------------------------------------------------------------


@dataclass
class PageRows:
    """One page of a listing, flattened: the rows the listing owns, the records that
    failed validation, and the gids of those (seen all the same)."""

    scope: Scope
    number: int
    restart: int
    rows: list[RowValues]
    rejections: list[Rejection]
    rejected_gids: list[str]
    stats: CallStats = field(default_factory=CallStats)
    #: the details of its entries, where the list returns them, and the add-on's
    #: fields they lacked
    details: list[tuple[str, DetailValues]] = field(default_factory=list)
    details_missing: tuple[str, ...] = ()
    #: the categories each of its entries carries, where the listing asked for them
    categories: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


@dataclass
class Done:
    """A task of a scope ended: in full, or with `error`. `scope_stats` are the calls of
    that scope so far."""

    scope: Scope
    error: BaseException | None = None
    scope_stats: CallStats = field(default_factory=CallStats)
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class ScopeListed(Done):
    """Every listing of a scope ended (or the first to fail stopped them): `listings`
    windows read to the end, `restarts` after expired offsets, over all of them."""

    listings: int = 0
    restarts: int = 0


@dataclass
class Confirmed:
    """What Asana says of one deletion candidate: the entry with the list's own fields (see
    `transform.listed_content`), or None for a 404; its task (a listing of a task holds its
    entries), and its categories."""

    scope: Scope
    gid: str
    entry: dict[str, Any] | None
    stats: CallStats = field(default_factory=CallStats)
    task: dict[str, Any] | None = None
    #: the categories it carries, where the listings ask for them
    categories: tuple[str, ...] | None = None


class ConfirmDone(Done):
    """Every candidate of one `ConfirmOrder` was answered (or `error` stopped them)."""


@dataclass
class DetailRead:
    """What the single GET said of one entry: its details (with the add-on's fields it
    lacked), or that it is gone (404), or why they could not be had (`problem`: a 403,
    details that fail validation), or that it failed after its retries (`failed`: a 5xx,
    a timeout; passed over this run, read again the next)."""

    gid: str
    values: DetailValues | None = None
    missing: tuple[str, ...] = ()
    gone: bool = False
    problem: str | None = None
    failed: bool = False
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class DetailsDone:
    """Every entry of one `DetailsOrder` was answered (or `error` stopped them);
    `details_stats` are the details' requests so far."""

    error: BaseException | None = None
    details_stats: CallStats = field(default_factory=CallStats)
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class Preflighted:
    """The preflight's answer: what it learnt, or the error that stops the run."""

    error: BaseException | None = None
    result: Preflight | None = None
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class LogLines:
    """On the pipe of logs: log records of the fetcher's (each pickled on its own), for
    the run's process to log with its handlers, and the time before which the fetcher
    has sent every record it made (see `etl.logorder`)."""

    records: list[bytes]
    until: float


@dataclass
class ResourcePage:
    """A page of a listing of `kind` (categories, timesheets, rates) of `key`."""

    kind: str
    key: str
    data: list[Any]
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class ResourceListed:
    """A listing of `kind` of `key` ended: in full, or refused (`refused`: Asana's
    message; the plan does not give it), or with `error`."""

    kind: str
    key: str
    error: BaseException | None = None
    refused: str | None = None
    kind_requests: int = 0  # the run's requests of this kind so far
    stats: CallStats = field(default_factory=CallStats)

