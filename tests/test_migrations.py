"""Migrations: one head, base ↔ head, no drift from etl.store.schema.metadata, and upgrades that
survive being cut short (the SIGKILLs themselves are in test_migration_kills)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from etl.store import engines, migrate, schema

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_TABLES = {
    "time_tracking_entries", "time_tracking_entry_scopes", "sync_runs", "sync_run_scopes",
    "rejected_records",
}


def test_single_head():
    # etl.store.migrate knows the head without alembic, so that an up-to-date run never imports it
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_upgrade_creates_the_contract_tables(engine):
    migrate.upgrade(engine)
    names = set(sa.inspect(engine).get_table_names())
    assert CONTRACT_TABLES <= names
    columns = {c["name"] for c in sa.inspect(engine).get_columns("time_tracking_entries")}
    assert {"gid", "duration_minutes", "entered_on", "attributable_to_gid", "attributable_to_name",
            "created_by_gid", "created_by_name", "first_seen_at", "updated_at", "deleted_at"} <= columns
    runs = {c["name"] for c in sa.inspect(engine).get_columns("sync_runs")}
    assert {"id", "command", "started_at", "finished_at", "status", "entries_seen", "inserted",
            "updated", "unchanged", "deleted", "rejected"} <= runs
    assert migrate.is_up_to_date(engine)


def test_down_to_base_and_up_again(engine):
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert CONTRACT_TABLES <= set(sa.inspect(engine).get_table_names())


def drift(engine: sa.Engine) -> list:
    """What alembic autogenerate finds between the database and `schema.metadata`."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        return compare_metadata(context, schema.metadata)


def test_autogenerate_finds_no_drift(engine):
    migrate.upgrade(engine)
    assert drift(engine) == []


def test_a_new_sqlite_file_is_made_at_head_without_alembic(tmp_path):
    """The snapshot of the schema at head (`etl.store.sqlite_head`) is what the migrations
    make today (else: `python -m etl.store.sqlite_head`), and a new SQLite file brought to
    head gets it, whole, without alembic; a file with anything in it goes to alembic."""
    from etl.store import sqlite_head

    migrated = engines.make_engine(f"sqlite:///{tmp_path / 'alembic.db'}")
    with migrate.migration_connection(migrated) as conn:
        command.upgrade(migrate.alembic_config(conn), "head")
    with migrated.connect() as conn:
        assert sqlite_head.dump(conn) == list(sqlite_head.STATEMENTS), (
            "the schema at head changed: run `python -m etl.store.sqlite_head`")
    assert sqlite_head.REVISION == migrate.HEAD_REVISION
    made = engines.make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    code = ("import sys; from etl.store import engines, migrate; "
            f"migrate.upgrade(engines.make_engine({str(made.url)!r})); "
            "print('alembic' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert ran.stdout.strip() == "False"
    master = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
    with migrated.connect() as a, made.connect() as b:
        assert a.exec_driver_sql(master).all() == b.exec_driver_sql(master).all()
    assert migrate.current_revision(made) == migrate.HEAD_REVISION and drift(made) == []
    other = engines.make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE someone_elses (x INTEGER)")
    assert not migrate.create_at_head(other)
    migrate.upgrade(other)
    assert migrate.is_up_to_date(other)
    for engine in (migrated, made, other):
        engine.dispose()


def stamp(engine: sa.Engine, revision: str) -> None:
    """Record `revision` without running anything: the database claims to be older (or
    newer) than its schema is."""
    with migrate.migration_connection(engine) as conn:
        command.stamp(migrate.alembic_config(conn), revision, purge=True)


REVISIONS = [f"{n:04d}" for n in range(1, int(migrate.HEAD_REVISION) + 1)]


def test_each_migration_run_again_over_its_own_work_completes(engine):
    """What a kill on MySQL leaves at worst: all of a migration's steps done, none of
    it recorded (its DDL committed statement by statement). Running it again must
    complete it, failing on none of what is there."""
    for previous, revision in zip(["base", *REVISIONS], REVISIONS):
        migrate.upgrade(engine, revision)
        stamp(engine, previous)
        migrate.upgrade(engine, revision)
        assert migrate.current_revision(engine) == revision
    assert drift(engine) == []


def test_a_first_upgrade_cut_short_is_completed(engine):
    """Some of the first migration's tables and indexes, no revision recorded: what a
    SQLite file killed in its first upgrade was left with before upgrades ran in one
    transaction ("table time_tracking_entries already exists" ever after)."""
    migrate.upgrade(engine, "0001")
    stamp(engine, "base")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE rejected_records")
        conn.exec_driver_sql("DROP INDEX ix_sync_runs_started_at" + (
            " ON sync_runs" if engine.dialect.name == "mysql" else ""))
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.HEAD_REVISION
    assert drift(engine) == []


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_failed_upgrade_changes_nothing_where_ddl_is_transactional(engine):
    """A table where 0002 makes a view: 0001 runs, 0002 fails, and the whole upgrade is
    undone (on SQLite, the driver used to commit each CREATE TABLE on its own)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE v_daily_hours_by_user (x INTEGER)")
    with pytest.raises(sa.exc.DatabaseError):
        migrate.upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) == {"v_daily_hours_by_user"}
    assert migrate.current_revision(engine) is None


def test_a_batch_copy_left_behind_is_dropped(tmp_path):
    """SQLite: a kill in 0006's copy-and-move of `time_tracking_entry_scopes`, before
    upgrades ran in one transaction, left the copy `_alembic_tmp_...` committed, and
    every later upgrade failed creating it. The table itself, and its rows, were intact."""
    engine = engines.make_engine(f"sqlite:///{tmp_path / 'leftover.db'}")
    migrate.upgrade(engine, "0005")
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.time_tracking_entries), {
            "gid": "1", "duration_minutes": 5, "entered_on": now.date(), "raw": {},
            "first_seen_at": now, "updated_at": now})
        conn.execute(sa.insert(schema.time_tracking_entry_scopes), {
            "scope_type": "user", "scope_gid": "2", "entry_gid": "1", "first_seen_at": now})
        conn.exec_driver_sql("CREATE TABLE _alembic_tmp_time_tracking_entry_scopes AS "
                             "SELECT * FROM time_tracking_entry_scopes")
    migrate.upgrade(engine)
    assert not [t for t in sa.inspect(engine).get_table_names() if t.startswith("_alembic_tmp")]
    assert drift(engine) == []
    with engine.connect() as conn:
        links = conn.execute(sa.select(schema.time_tracking_entry_scopes.c.entry_gid)).scalars()
        assert list(links) == ["1"]
    engine.dispose()


def test_text_from_asana_of_any_length_round_trips(engine):
    """A name of 70,000 characters (three to four bytes each: about 200 KB), and
    reasons, payloads and errors as long: MySQL's TEXT held 65,535 bytes (0008)."""
    migrate.upgrade(engine)
    text = ("Zoë 日本語 🎉 " * 7_000)[:70_000]
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.time_tracking_entries), {
            "gid": "1", "duration_minutes": 5, "entered_on": now.date(), "raw": {"name": text},
            "attributable_to_gid": "2", "attributable_to_name": text,
            "created_by_gid": "3", "created_by_name": text, "first_seen_at": now,
            "updated_at": now})
        run_id = conn.execute(sa.insert(schema.sync_runs).returning(schema.sync_runs.c.id), {
            "command": "sync", "started_at": now, "status": "failed", "error": text}).scalar()
        conn.execute(sa.insert(schema.sync_run_scopes), {
            "run_id": run_id, "scope_type": "user", "scope_gid": "3", "status": "failed",
            "started_at": now, "error": text})
        conn.execute(sa.insert(schema.rejected_records), {
            "run_id": run_id, "scope_type": "user", "scope_gid": "3", "reason": text,
            "payload": text, "rejected_at": now})
    with engine.connect() as conn:
        stored = [
            *conn.execute(sa.select(schema.time_tracking_entries.c.attributable_to_name,
                                    schema.time_tracking_entries.c.created_by_name)).one(),
            conn.execute(sa.select(schema.time_tracking_entries.c.raw)).scalar()["name"],
            conn.execute(sa.select(schema.sync_runs.c.error)).scalar(),
            conn.execute(sa.select(schema.sync_run_scopes.c.error)).scalar(),
            *conn.execute(sa.select(schema.rejected_records.c.reason,
                                    schema.rejected_records.c.payload)).one(),
            # the views read the widened columns as they are
            *conn.exec_driver_sql("SELECT attributable_to_name, created_by_name "
                                  "FROM v_time_tracking_entries").one(),
        ]
    assert stored == [text] * 9


def test_alembic_cli_from_the_repository_root(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "ASANA_ETL_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    check = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    engine = engines.make_engine(url)
    assert migrate.is_up_to_date(engine)
    engine.dispose()


def test_an_installed_wheel_finds_and_applies_its_migrations(tmp_path):
    """`pip install .` (not editable): `db upgrade` must work from any folder."""
    build, target, work = tmp_path / "build", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(build), str(ROOT)],
        check=True, capture_output=True,
    )
    wheel = next(build.glob("asana_etl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "etl/migrations/env.py" in names
    assert any(n.startswith("etl/migrations/versions/0001_") for n in names)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target),
           "ASANA_ETL_DATABASE_URL": f"sqlite:///{work / 'installed.db'}"}
    code = ("import etl, etl.store.migrate; assert etl.__file__.startswith(%r), etl.__file__; "
            "print(etl.store.migrate.migrations_dir())" % str(target))
    where = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True,
                           capture_output=True, text=True)
    assert where.stdout.strip() == str(target / "etl" / "migrations")
    upgrade = subprocess.run([sys.executable, "-m", "etl", "db", "upgrade"], cwd=work, env=env,
                             capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "is at revision" in upgrade.stdout
