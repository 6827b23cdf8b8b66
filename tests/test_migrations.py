"""Migrations: one head, base ↔ head, and no drift from etl.db.metadata."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from etl import db

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_TABLES = {
    "time_tracking_entries", "time_tracking_entry_scopes", "sync_runs", "sync_run_scopes",
    "rejected_records",
}


def test_single_head():
    # etl.db knows the head without alembic, so that an up-to-date run never imports it
    assert db.head_revision() == db.HEAD_REVISION


def test_upgrade_creates_the_contract_tables(engine):
    db.upgrade(engine)
    names = set(sa.inspect(engine).get_table_names())
    assert CONTRACT_TABLES <= names
    columns = {c["name"] for c in sa.inspect(engine).get_columns("time_tracking_entries")}
    assert {"gid", "duration_minutes", "entered_on", "attributable_to_gid", "attributable_to_name",
            "created_by_gid", "created_by_name", "first_seen_at", "updated_at", "deleted_at"} <= columns
    runs = {c["name"] for c in sa.inspect(engine).get_columns("sync_runs")}
    assert {"id", "command", "started_at", "finished_at", "status", "entries_seen", "inserted",
            "updated", "unchanged", "deleted", "rejected"} <= runs
    assert db.is_up_to_date(engine)


def test_down_to_base_and_up_again(engine):
    db.upgrade(engine)
    db.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    db.upgrade(engine)
    assert CONTRACT_TABLES <= set(sa.inspect(engine).get_table_names())


def test_autogenerate_finds_no_drift(engine):
    db.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_alembic_cli_from_the_repository_root(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "ASANA_ETL_DATABASE_URL": url}
    alembic = [sys.executable, "-m", "alembic"]
    subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    check = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    engine = db.make_engine(url)
    assert db.is_up_to_date(engine)
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
    code = ("import etl, etl.db; assert etl.__file__.startswith(%r), etl.__file__; "
            "print(etl.db.migrations_dir())" % str(target))
    where = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True,
                           capture_output=True, text=True)
    assert where.stdout.strip() == str(target / "etl" / "migrations")
    upgrade = subprocess.run([sys.executable, "-m", "etl", "db", "upgrade"], cwd=work, env=env,
                             capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "is at revision" in upgrade.stdout
