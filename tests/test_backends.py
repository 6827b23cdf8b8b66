"""What makes PostgreSQL and MySQL/MariaDB first-class: types, views, BI queries, drivers."""

from __future__ import annotations

import datetime as dt
import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.store import engines, migrate, schema
from etl.cli import cli
from etl.config import Scope
from etl.errors import DatabaseError
from etl.run.pipeline import run_sync
from etl.simulator import Dataset
from tests.helpers import expected_rows, stored_rows

README = Path(__file__).resolve().parent.parent / "README.md"
VIEWS = {"v_time_tracking_entries", "v_daily_hours_by_project", "v_daily_hours_by_user"}


def readme_queries() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Querying from BI tools", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def test_column_types_mean_the_same_everywhere(engine, backend):
    migrate.upgrade(engine)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("time_tracking_entries")}
    assert isinstance(columns["gid"]["type"], sa.String)
    assert isinstance(columns["entered_on"]["type"], sa.Date)
    assert isinstance(columns["duration_minutes"]["type"], sa.Integer)
    if backend == "postgresql":
        assert columns["updated_at"]["type"].timezone is True
        with engine.connect() as conn:
            raw_type = conn.scalar(sa.text(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = 'time_tracking_entries' AND column_name = 'raw'"))
        assert raw_type == "jsonb"
    if backend == "mysql":
        with engine.connect() as conn:
            collations = dict(conn.execute(sa.text(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'")).all())
        assert set(collations.values()) == {"utf8mb4_bin"}, collations


def test_views_exist_and_leave_out_deleted_entries(engine, backend):
    migrate.upgrade(engine)
    assert VIEWS <= set(sa.inspect(engine).get_view_names())
    t = schema.time_tracking_entries
    now = dt.datetime.now(dt.UTC)
    base = {"attributable_to_gid": "9", "attributable_to_name": "P", "created_by_gid": "7",
            "created_by_name": "U", "raw": {}, "first_seen_at": now, "updated_at": now,
            "deleted_at": None}
    with engine.begin() as conn:
        conn.execute(sa.insert(t), [
            {**base, "gid": "1", "duration_minutes": 90, "entered_on": dt.date(2026, 3, 4)},
            {**base, "gid": "2", "duration_minutes": 30, "entered_on": dt.date(2026, 3, 4)},
            {**base, "gid": "3", "duration_minutes": 60, "entered_on": dt.date(2026, 3, 4),
             "deleted_at": now},
        ])
    with engine.connect() as conn:
        live = conn.execute(sa.text(
            "SELECT gid, duration_hours, entered_week, entered_month FROM v_time_tracking_entries "
            "ORDER BY gid")).all()
        daily = conn.execute(sa.text(
            "SELECT entered_on, attributable_to_gid, hours, entries FROM v_daily_hours_by_project"
        )).one()
        by_user = conn.execute(sa.text(
            "SELECT created_by_gid, hours, entries FROM v_daily_hours_by_user")).one()
    assert [(g, round(float(h), 2)) for g, h, _, _ in live] == [("1", 1.5), ("2", 0.5)]
    assert str(live[0].entered_week) == "2026-03-02"  # the Monday of that week
    assert live[0].entered_month == "2026-03"
    assert str(daily.entered_on) == "2026-03-04" and float(daily.hours) == 2.0 and daily.entries == 2
    assert by_user.created_by_gid == "7" and float(by_user.hours) == 2.0


def normalise(value):
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return f"{float(value):.2f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def bi_answers() -> dict[str, list]:
    return {}


def test_readme_bi_queries_answer_the_same_on_every_backend(asana_server, make_settings, engine,
                                                            backend, sleep, bi_answers):
    queries = readme_queries()
    assert len(queries) == 3
    run_sync(make_settings(), sleep=sleep)
    answers = []
    with engine.connect() as conn:
        for query in queries:
            rows = [tuple(normalise(v) for v in row) for row in conn.exec_driver_sql(query)]
            assert rows
            answers.append(rows)
    bi_answers[backend] = answers
    for other, theirs in bi_answers.items():
        assert answers == theirs, f"{backend} and {other} disagree"


def test_a_rename_that_only_changes_case_or_accents_is_seen(asana_server, make_settings, engine,
                                                            sleep):
    data = asana_server.dataset
    settings = make_settings([Scope("workspace", data.workspace_gid)])
    run_sync(settings, sleep=sleep)
    user = next(g for g, n in data.users.items() if n.startswith("Seán"))
    data.rename_user(user, "SEÁN O'BRIEN")
    result = run_sync(settings, sleep=sleep)
    assert result.counts.updated == sum(e.user_gid == user for e in data.entries.values()) > 0
    data.rename_user(user, "SEAN O'BRIEN")
    assert run_sync(settings, sleep=sleep).counts.updated == result.counts.updated
    assert stored_rows(engine) == expected_rows(data)


def test_emoji_and_very_long_names_round_trip(asana_server, make_settings, engine, sleep):
    data = asana_server.dataset
    user = next(iter(data.users))
    name = "🧪 " + "長い名前 " * 120  # 600+ characters, 4-byte UTF-8 included
    data.rename_user(user, name)
    run_sync(make_settings([Scope("user", user)]), sleep=sleep)
    assert {r["created_by_name"] for r in stored_rows(engine).values()} == {name}


def test_names_with_tabs_newlines_and_backslashes_round_trip(asana_server, make_settings, engine,
                                                             sleep):
    """What PostgreSQL's COPY text format escapes, as names and inside the raw JSON."""
    data = asana_server.dataset
    user = next(iter(data.users))
    name = 'Tab\there\nnew line\r\\N back\\slash "quoted"'
    data.rename_user(user, name)
    settings = make_settings([Scope("user", user)])
    first = run_sync(settings, sleep=sleep)
    stored = stored_rows(engine)
    assert {r["created_by_name"] for r in stored.values()} == {name}
    assert stored == {gid: row for gid, row in expected_rows(data).items() if gid in stored}
    with engine.connect() as conn:
        raws = conn.execute(sa.select(schema.time_tracking_entries.c.raw)).scalars().all()
    assert {raw["created_by"]["name"] for raw in raws} == {name}
    again = run_sync(settings, sleep=sleep)  # the stored hash is the one a listing gives
    assert again.counts.unchanged == first.counts.inserted and again.counts.updated == 0


@pytest.mark.parametrize(("module", "url", "extra"), [
    ("psycopg", "postgresql+psycopg://u:secretpw@127.0.0.1/db", "postgres"),
    ("pymysql", "mysql+pymysql://u:secretpw@127.0.0.1/db", "mysql"),
])
def test_a_missing_driver_names_the_extra(monkeypatch, module, url, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(DatabaseError, match=rf"pip install 'asana-etl\[{extra}\]'") as info:
        engines.make_engine(url)
    assert "secretpw" not in str(info.value)
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"ASANA_ETL_DATABASE_URL": url})
    assert result.exit_code == 2 and f"asana-etl[{extra}]" in result.stderr


def test_the_simulated_dataset_has_what_these_tests_rely_on():
    data = Dataset.generate(seed=3, entries=400, users=10, projects=6, portfolios=2, tasks=30)
    assert any(n.startswith("Seán") for n in data.users.values())
    assert any(e.attributable_to is None for e in data.entries.values())
