"""A simulated Asana on loopback: a real HTTP server serving the time tracking endpoints.

It backs `asana-etl demo`, the tests and the benchmarks. The dataset is generated
deterministically from a seed, shaped like real data: users, projects, portfolios
holding projects, tasks and entries, some attributed to no project, with Unicode, quotes
and very long names; a few people log most of the hours (the busiest user logs ten times
what the quietest does); entries are made on or a little after the day they are for
(some ahead of it), and gids grow in the order entries are made. Around the entries, from
a random stream of their own: each entry's `created_at`, `billable_status`, `description`
and categories, the workspace's categories (some archived), a timesheet per user per
week with its approval status, and hourly rates per project and person. It can all be
edited while the server runs.

The server behaves like the API described in `shared/asana/`: bearer auth, `limit`
1–100, the `entered_on_start_date`/`entered_on_end_date` filters (inclusive, or exclusive
with `exclusive_bounds`; a workspace needs one), opaque offsets bound to their query,
`next_page: null` at the end, Asana's error bodies, and faults on demand (429 with
Retry-After, 5xx, HTML error pages, connection resets, truncated bodies, expired offsets,
and listings that would never end: offsets that loop, pages of nothing new, answers sent
a byte at a time). Beyond the list: the single GET with every field,
`GET /time_tracking_categories`, `GET /timesheet_approval_statuses` and `GET /rates`;
switches for a workspace without the Timesheets & Budgets add-on (`addon`), for what the
list does with fields it does not document (`list_extra_fields`) and for the timesheets'
lower-case statuses (`approval_case`).

Its rooms:
    models.py     Entry, Category, Timesheet, Rate and the enums
    dataset.py    Dataset: the data and the edits of entries, users and projects
    edits.py      the edits of categories, timesheets and rates (a part of Dataset)
    generate.py   the deterministic generation: users, projects, tasks, entries
    details.py    the generation of the details around them, from their own stream
    index.py      a listing's entries: by scope filter and day, cached
    render.py     objects as JSON; entries serialised once per set of opt_fields
    server.py     AsanaSimulator: the server, its switches, what was asked
    handler.py    one request: limits, authentication, faults, then its route
    routes/       one module per endpoint, and `answer`, which picks it
    responses.py  error bodies, next_page, the checks of parameters endpoints share
    offsets.py    signed offsets; limits.py the rate and in-flight limits;
    faults.py     the faults on demand; __main__.py `python -m etl.simulator`
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
