"""A simulated Asana on loopback: a real HTTP server serving the time tracking endpoints.

It backs `asana-etl demo`, the tests and the benchmarks. The dataset is generated
deterministically from a seed, shaped like real data: users, projects, portfolios
holding projects, tasks and entries, some attributed to no project, with Unicode, quotes
and very long names; a few people log most of the hours (the busiest user logs ten times
what the quietest does); entries are made on or a little after the day they are for
(some ahead of it), and gids grow in the order entries are made. It can be edited while
the server runs. The server behaves like the API described in `shared/asana/`: bearer
auth, `limit` 1–100, the `entered_on_start_date`/`entered_on_end_date` filters (inclusive,
or exclusive with `exclusive_bounds`; a workspace needs one), opaque offsets bound to
their query, `next_page: null` at the end, Asana's error bodies, and faults on demand
(429 with Retry-After, 5xx, HTML error pages, connection resets, truncated bodies,
expired offsets, and listings that would never end: offsets that loop, pages of nothing
new, answers sent a byte at a time).
"""

from __future__ import annotations

from etl.simulator.dataset import Dataset
from etl.simulator.faults import OFFSET_FAULTS, Fault
from etl.simulator.generate import long_name, user_weights
from etl.simulator.models import (
    APPROVAL_STATUSES,
    BILLABLE_STATUSES,
    CATEGORY_COLORS,
    Category,
    Entry,
    Rate,
    Timesheet,
    monday,
)
from etl.simulator.server import DEMO_TOKEN, AsanaSimulator, RequestRecord

__all__ = ["APPROVAL_STATUSES", "BILLABLE_STATUSES", "CATEGORY_COLORS", "DEMO_TOKEN",
           "OFFSET_FAULTS", "AsanaSimulator", "Category", "Dataset", "Entry", "Fault", "Rate",
           "RequestRecord", "Timesheet", "long_name", "monday", "user_weights"]
