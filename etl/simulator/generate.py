"""A deterministic dataset shaped like real data: the same arguments always give the same
data.

Users, projects, portfolios holding projects, tasks (one in eight in no project) and
entries, with Unicode, quotes and very long names. Users are skewed: their weights fall
from 10 to 1 along a power law, in an order unrelated to their gids. Each entry is made on
its day (most), a few days after (some), or up to two weeks ahead (a few); gids are handed
out in the order entries are made, and `created_at` is that moment (UTC, working hours).

The details around the entries (`billable_status`, `description`, categories, weekly
timesheets, rates) come from a second random stream seeded from the same seed
(`etl.simulator.details`), so that adding them moved none of the entries other tests use.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import TYPE_CHECKING

from etl.simulator.models import Entry

if TYPE_CHECKING:
    from etl.simulator.dataset import Dataset

WORKSPACE_GID = "1100000000000001"

# Names that break naive code: quotes, accents, CJK, right-to-left, emoji, very long.
TRICKY_NAMES = [
    'Zoë "Zed" Ångström',
    "Seán O'Brien",
    "李小龙",
    "Ἀριστοτέλης",
    "שׂרה כהן",
    "Renée 🚀 Dupont",
    "Robert'); DROP TABLE time_tracking_entries;--",
    "back\\slash & <tags>",
]
_FIRST = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances", "Edsger", "Hedy"]
_LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Allen"]
_PROJECT_WORDS = ["Website", "Launch", "Migration", "Audit", "Onboarding", "Roadmap", "Support"]


def user_weights(users: int) -> list[float]:
    """How much each user logs, relative to the others: a power law from 10 down to 1
    (real data is skewed: a few people log most of the hours)."""
    if users < 2:
        return [1.0] * users
    exponent = math.log(10) / math.log(users)
    return [10 * (rank + 1) ** -exponent for rank in range(users)]


def long_name(seed: int, length: int = 300) -> str:
    base = f"Very long name {seed} — ünïcödé “quoted” 'single' 名前 "
    return (base * (length // len(base) + 1))[:length]


def _lag(rng: random.Random) -> int:
    """Days between an entry's day and the day it is made: most the same day, some a few
    days later, a few up to two weeks ahead (negative)."""
    draw = rng.random()
    if draw < 0.6:
        return 0
    if draw < 0.9:
        return rng.randint(1, 3)
    if draw < 0.98:
        return rng.randint(4, 30)
    return -rng.randint(1, 14)


def made_at(day: dt.date, moment: float) -> dt.datetime:
    """When, on `day`, an entry was made: `moment` (0–1) of the way through 07:00–18:00
    UTC, to the millisecond."""
    start = dt.datetime.combine(day, dt.time(7), tzinfo=dt.UTC)
    return start + dt.timedelta(milliseconds=int(moment * 39_600_000))


def generate_into(data: Dataset, seed: int, *, entries: int, users: int, projects: int,
                  portfolios: int, tasks: int, start: dt.date, days: int) -> None:
    """Fill an empty `data` with users, projects, portfolios, tasks and entries."""
    rng = random.Random(seed)
    for i in range(users):
        if i < len(TRICKY_NAMES):
            name = TRICKY_NAMES[i]
        elif i == len(TRICKY_NAMES):
            name = long_name(i)
        else:
            name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)} {i}"
        data.users[data.new_gid()] = name
    for i in range(projects):
        name = long_name(1000 + i, 310) if i == 1 else f"{rng.choice(_PROJECT_WORDS)} {i} “Q{i % 4 + 1}”"
        data.projects[data.new_gid()] = name
    project_gids = list(data.projects)
    for i in range(portfolios):
        held = rng.sample(project_gids, k=min(len(project_gids), max(1, len(project_gids) // 3)))
        data.portfolios[data.new_gid()] = (f"Portfolio {i} – ‘FY{26 + i}’", held)
    for i in range(tasks):
        # about one task in eight belongs to no project: its entries have attributable_to null
        project = None if i % 8 == 7 else rng.choice(project_gids)
        data.tasks[data.new_gid()] = (f"Task {i}", project)
    task_gids, user_gids = list(data.tasks), list(data.users)
    weights = user_weights(len(user_gids))
    rng.shuffle(weights)
    made = []
    for _ in range(entries):
        task = rng.choice(task_gids)
        day = start + dt.timedelta(days=rng.randrange(days))
        made.append((day + dt.timedelta(days=_lag(rng)), rng.random(), task,
                     rng.choices(user_gids, weights)[0], rng.randint(1, 480), day))
    made.sort()  # gids grow with the moment an entry is made
    starts: dict[dt.date, dt.datetime] = {}  # `made_at`, a day's start made once
    millisecond = dt.timedelta(milliseconds=1)
    for made_on, moment, task, user, minutes, day in made:
        gid = data.new_gid()
        start = starts.get(made_on) or starts.setdefault(made_on, made_at(made_on, 0.0))
        data.entries[gid] = Entry(gid, task, user, data.tasks[task][1], minutes, day,
                                  start + int(moment * 39_600_000) * millisecond)
