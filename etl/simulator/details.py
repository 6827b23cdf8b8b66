"""The details around generated entries, from their own random stream: each entry's
`billable_status`, `description` and categories; the workspace's categories (a few
archived); a timesheet per user per week with entries; and rates per project and person.

What it draws is shaped like real data: entries in no project are `notApplicable`, most
others billable; a third of the descriptions are null and some empty, some in tricky
Unicode; half the entries carry no category, a few two, and archived categories only sit on
older entries. Timesheets older than three weeks (before the dataset's last day) are
mostly APPROVED, a few REJECTED or still SUBMITTED; recent ones are DRAFT or SUBMITTED,
some already APPROVED or REJECTED. Some (project, person) pairs have no rate, and some
projects rate a placeholder (a role not yet staffed).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING

from etl.simulator.generate import long_name
from etl.simulator.models import Category, Rate, Timesheet, monday

if TYPE_CHECKING:
    from etl.simulator.dataset import Dataset

#: (name, color, archived): the first categories of a workspace, names that break naive code
_CATEGORIES = [
    ("Development", "blue", False),
    ("Design", "purple", False),
    ("Meetings", "cool-gray", False),
    ("Support", "orange", False),
    ('Client "on-site" ✈️', "red", False),
    ("Formation / Schulung / 研修", "aqua", False),
    ("Research & <Development>", "indigo", True),
    ("Legacy (pre-2026)", "none", True),
]
_DESCRIPTIONS = [
    "Sprint planning", "Code review", "Bug fixing", "Client call", "Writing the spec",
    "Pairing with the new hire", "Release", "Invoice follow-up",
]
_TRICKY_DESCRIPTIONS = [
    'Fixed the "quote" bug; it\'s done',
    "Line one\nline two\n\tindented",
    "👩‍💻 pairing on the 🚀 launch",
    "مراجعة الكود",
    "Cafe\u0301 vs café: the same word?",
    "Robert'); DROP TABLE time_tracking_entries;--",
    "back\\slash & <b>tags</b> % _ wildcards",
    long_name(77, 2000),
]
_PLACEHOLDERS = ["Designer (placeholder)", "Engineer (placeholder)", "Consultant — TBD"]
_RATES = [50.0, 65.0, 75.0, 80.0, 95.0, 110.0, 120.5, 135.0, 150.0, 175.25]


def generate_details(data: Dataset, seed: int, *, categories: int, start: dt.date,
                     days: int) -> None:
    """Add the details to a freshly generated `data`, from the stream of `seed`."""
    rng = random.Random(f"details:{seed}")
    _categories(data, categories)
    half_way = start + dt.timedelta(days=days // 2)
    live = [g for g, c in data.categories.items() if not c.is_archived]
    every = list(data.categories)
    plain, tricky = _DESCRIPTIONS, _TRICKY_DESCRIPTIONS
    for entry in data.entries.values():
        # one draw of 48 bits an entry, cut into its choices: `choices`, `sample` and a
        # draw each cost 100,000 entries a few tenths of a second more
        bits = rng.getrandbits(48)
        billable, described, count = bits & 1023, (bits >> 10) & 1023, (bits >> 20) & 1023
        if entry.attributable_to is None:
            entry.billable_status = "notApplicable" if billable < 922 else "nonBillable"
        else:
            entry.billable_status = ("billable" if billable < 614 else
                                     "nonBillable" if billable < 922 else "notApplicable")
        if described < 307:
            entry.description = None
        elif described < 410:
            entry.description = ""
        elif described < 922:
            entry.description = plain[described % len(plain)]
        else:
            entry.description = tricky[described % len(tricky)]
        pool = every if entry.entered_on < half_way else live
        if count >= 512 and pool:
            first = ((bits >> 30) & 1023) % len(pool)
            if count < 870 or len(pool) < 2:
                entry.categories = (pool[first],)
            else:
                second = (bits >> 40) % (len(pool) - 1)
                second += second >= first
                entry.categories = (pool[first], pool[second])
    _timesheets(data, rng, start + dt.timedelta(days=days - 1))
    _rates(data, rng)


def _categories(data: Dataset, count: int) -> None:
    for i in range(count):
        if i < len(_CATEGORIES):
            name, color, archived = _CATEGORIES[i]
        else:
            name, color, archived = f"Category {i}", "green", i % 5 == 4
        gid = data.new_detail_gid()
        data.categories[gid] = Category(gid, name, color, archived)


def _timesheets(data: Dataset, rng: random.Random, last_day: dt.date) -> None:
    """One timesheet per user per week with entries, in week order, then user order."""
    users = {gid: i for i, gid in enumerate(data.users)}
    days = {(e.entered_on, e.user_gid) for e in data.entries.values()}
    weeks = sorted({(monday(day), users[user]) for day, user in days})
    user_gids = list(data.users)
    this_week = monday(last_day)
    for week, user in weeks:
        age = (this_week - week).days // 7
        if age <= 0:
            weights = (70, 30, 0, 0)
        elif age == 1:
            weights = (20, 50, 20, 10)
        elif age == 2:
            weights = (0, 30, 60, 10)
        else:
            weights = (1, 3, 93, 3)
        status = rng.choices(("DRAFT", "SUBMITTED", "APPROVED", "REJECTED"), weights)[0]
        sheet = Timesheet(data.new_detail_gid(), user_gids[user], week, status)
        data.timesheets[(sheet.user_gid, week)] = sheet


def _rates(data: Dataset, rng: random.Random) -> None:
    for name in _PLACEHOLDERS:
        data.placeholders[data.new_detail_gid()] = name
    for project in data.projects:
        for user in data.users:
            if rng.random() < 0.6:
                rate = Rate(data.new_detail_gid(), project, user, rng.choice(_RATES),
                            data.currency_code)
                data.rates[rate.gid] = rate
        for placeholder in data.placeholders:
            if rng.random() < 0.3:
                rate = Rate(data.new_detail_gid(), project, placeholder, rng.choice(_RATES),
                            data.currency_code)
                data.rates[rate.gid] = rate
