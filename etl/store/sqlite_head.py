"""The schema at head on SQLite, as the migrations leave it: what a new SQLite file gets
in one transaction, without alembic (importing it and running every migration was a
fifth of a second of the first sync of a small workspace; see `etl.store.migrate`).

Generated from the migrations, never written by hand: `python -m etl.store.sqlite_head`
rewrites `REVISION` and `STATEMENTS` after a new migration (a test fails until it is
run). `STATEMENTS` are the `sqlite_master` entries of a new database upgraded by alembic,
in the order they were made, and the row of `alembic_version`: replayed in a new file,
they make the same `sqlite_master`.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

# --- generated: from here to the end marker -------------------------------------------
#: The revision these statements make.
REVISION = '0010'

STATEMENTS: tuple[str, ...] = (
    ('CREATE TABLE alembic_version (\n'
     '\tversion_num VARCHAR(32) NOT NULL, \n'
     '\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n'
     ')'),
    ('CREATE TABLE time_tracking_entries (\n'
     '\tgid VARCHAR(64) NOT NULL, \n'
     '\tduration_minutes INTEGER NOT NULL, \n'
     '\tentered_on DATE NOT NULL, \n'
     '\tattributable_to_gid VARCHAR(64), \n'
     '\tattributable_to_name TEXT, \n'
     '\tcreated_by_gid VARCHAR(64), \n'
     '\tcreated_by_name TEXT, \n'
     '\traw JSON NOT NULL, \n'
     '\tfirst_seen_at DATETIME NOT NULL, \n'
     '\tupdated_at DATETIME NOT NULL, \n'
     '\tdeleted_at DATETIME, content_hash VARCHAR(32), task_gid VARCHAR(64), task_name '
     'TEXT, billable_status VARCHAR(32), approval_status VARCHAR(16), description TEXT, '
     'created_at DATETIME, details_fetched_at DATETIME, details_content_hash VARCHAR(32), '
     '\n'
     '\tCONSTRAINT pk_time_tracking_entries PRIMARY KEY (gid)\n'
     ')'),
    ('CREATE INDEX ix_time_tracking_entries_entered_on ON time_tracking_entries '
     '(entered_on)'),
    ('CREATE INDEX ix_time_tracking_entries_created_by_gid ON time_tracking_entries '
     '(created_by_gid)'),
    ('CREATE INDEX ix_time_tracking_entries_attributable_to_gid ON time_tracking_entries '
     '(attributable_to_gid)'),
    ('CREATE TABLE sync_runs (\n'
     '\tid INTEGER NOT NULL, \n'
     '\tcommand VARCHAR(16) NOT NULL, \n'
     '\tstarted_at DATETIME NOT NULL, \n'
     '\tfinished_at DATETIME, \n'
     '\tstatus VARCHAR(16) NOT NULL, \n'
     "\tscopes_total INTEGER DEFAULT '0' NOT NULL, \n"
     "\tscopes_failed INTEGER DEFAULT '0' NOT NULL, \n"
     "\tentries_seen INTEGER DEFAULT '0' NOT NULL, \n"
     "\tinserted INTEGER DEFAULT '0' NOT NULL, \n"
     "\tupdated INTEGER DEFAULT '0' NOT NULL, \n"
     "\tunchanged INTEGER DEFAULT '0' NOT NULL, \n"
     "\tdeleted INTEGER DEFAULT '0' NOT NULL, \n"
     "\trejected INTEGER DEFAULT '0' NOT NULL, \n"
     '\terror TEXT, \n'
     '\thostname VARCHAR(255), \n'
     "\tpid INTEGER, details_requests INTEGER DEFAULT '0' NOT NULL, details_changed "
     "INTEGER DEFAULT '0' NOT NULL, details_backlog INTEGER, details_list VARCHAR(16), "
     "listings_requests INTEGER DEFAULT '0' NOT NULL, categories_requests INTEGER DEFAULT "
     "'0' NOT NULL, timesheets_requests INTEGER DEFAULT '0' NOT NULL, rates_requests "
     "INTEGER DEFAULT '0' NOT NULL, \n"
     '\tCONSTRAINT pk_sync_runs PRIMARY KEY (id)\n'
     ')'),
    'CREATE INDEX ix_sync_runs_started_at ON sync_runs (started_at)',
    ('CREATE TABLE sync_run_scopes (\n'
     '\trun_id INTEGER NOT NULL, \n'
     '\tscope_type VARCHAR(16) NOT NULL, \n'
     '\tscope_gid VARCHAR(64) NOT NULL, \n'
     '\tstatus VARCHAR(16) NOT NULL, \n'
     '\tstarted_at DATETIME NOT NULL, \n'
     '\tfinished_at DATETIME, \n'
     "\tpages INTEGER DEFAULT '0' NOT NULL, \n"
     "\tentries INTEGER DEFAULT '0' NOT NULL, \n"
     "\tinserted INTEGER DEFAULT '0' NOT NULL, \n"
     "\tupdated INTEGER DEFAULT '0' NOT NULL, \n"
     "\tunchanged INTEGER DEFAULT '0' NOT NULL, \n"
     "\trejected INTEGER DEFAULT '0' NOT NULL, \n"
     "\tretries INTEGER DEFAULT '0' NOT NULL, \n"
     "\tretry_after_seconds FLOAT DEFAULT '0' NOT NULL, \n"
     "\terror TEXT, deleted INTEGER DEFAULT '0' NOT NULL, restarts INTEGER DEFAULT '0' NOT "
     "NULL, window_since DATE, window_until DATE, listings INTEGER DEFAULT '0' NOT NULL, "
     "requests INTEGER DEFAULT '0' NOT NULL, \n"
     '\tCONSTRAINT pk_sync_run_scopes PRIMARY KEY (run_id, scope_type, scope_gid), \n'
     '\tCONSTRAINT fk_sync_run_scopes_run_id_sync_runs FOREIGN KEY(run_id) REFERENCES '
     'sync_runs (id) ON DELETE CASCADE\n'
     ')'),
    ('CREATE INDEX ix_sync_run_scopes_scope_type_scope_gid_status ON sync_run_scopes '
     '(scope_type, scope_gid, status)'),
    ('CREATE TABLE rejected_records (\n'
     '\tid INTEGER NOT NULL, \n'
     '\trun_id INTEGER NOT NULL, \n'
     '\tscope_type VARCHAR(16) NOT NULL, \n'
     '\tscope_gid VARCHAR(64) NOT NULL, \n'
     '\tentry_gid VARCHAR(64), \n'
     '\treason TEXT NOT NULL, \n'
     '\tpayload TEXT NOT NULL, \n'
     '\trejected_at DATETIME NOT NULL, \n'
     '\tCONSTRAINT pk_rejected_records PRIMARY KEY (id), \n'
     '\tCONSTRAINT fk_rejected_records_run_id_sync_runs FOREIGN KEY(run_id) REFERENCES '
     'sync_runs (id) ON DELETE CASCADE\n'
     ')'),
    'CREATE INDEX ix_rejected_records_run_id ON rejected_records (run_id)',
    ('CREATE VIEW v_daily_hours_by_project AS \n'
     '        SELECT entered_on, attributable_to_gid, attributable_to_name,\n'
     '               SUM(duration_minutes) / 60.0 AS hours, COUNT(*) AS entries\n'
     '        FROM time_tracking_entries\n'
     '        WHERE deleted_at IS NULL\n'
     '        GROUP BY entered_on, attributable_to_gid, attributable_to_name'),
    ('CREATE VIEW v_daily_hours_by_user AS \n'
     '        SELECT entered_on, created_by_gid, created_by_name,\n'
     '               SUM(duration_minutes) / 60.0 AS hours, COUNT(*) AS entries\n'
     '        FROM time_tracking_entries\n'
     '        WHERE deleted_at IS NULL\n'
     '        GROUP BY entered_on, created_by_gid, created_by_name'),
    ('CREATE TABLE "time_tracking_entry_scopes" (\n'
     '\tscope_type VARCHAR(16) NOT NULL, \n'
     '\tscope_gid VARCHAR(64) NOT NULL, \n'
     '\tentry_gid VARCHAR(64) NOT NULL, \n'
     '\tfirst_seen_at DATETIME NOT NULL, \n'
     '\tCONSTRAINT pk_time_tracking_entry_scopes PRIMARY KEY (scope_type, scope_gid, '
     'entry_gid)\n'
     ')'),
    ('CREATE INDEX ix_time_tracking_entry_scopes_entry_gid ON time_tracking_entry_scopes '
     '(entry_gid)'),
    ('CREATE TABLE "sync_run_seen_entries" (\n'
     '\trun_id INTEGER NOT NULL, \n'
     '\tscope_type VARCHAR(16) NOT NULL, \n'
     '\tscope_gid VARCHAR(64) NOT NULL, \n'
     '\tentry_gid VARCHAR(64) NOT NULL\n'
     ')'),
    ('CREATE INDEX ix_sync_run_seen_entries_run_id_scope_type_scope_gid ON '
     'sync_run_seen_entries (run_id, scope_type, scope_gid)'),
    'CREATE INDEX ix_time_tracking_entries_task_gid ON time_tracking_entries (task_gid)',
    ('CREATE TABLE time_tracking_categories (\n'
     '\tgid VARCHAR(64) NOT NULL, \n'
     '\tworkspace_gid VARCHAR(64) NOT NULL, \n'
     '\tname TEXT, \n'
     '\tcolor VARCHAR(32), \n'
     '\tis_archived BOOLEAN NOT NULL, \n'
     '\tdeleted_at DATETIME, \n'
     '\tCONSTRAINT pk_time_tracking_categories PRIMARY KEY (gid)\n'
     ')'),
    ('CREATE TABLE time_tracking_entry_categories (\n'
     '\tentry_gid VARCHAR(64) NOT NULL, \n'
     '\tcategory_gid VARCHAR(64) NOT NULL, \n'
     '\tCONSTRAINT pk_time_tracking_entry_categories PRIMARY KEY (entry_gid, category_gid)\n'
     ')'),
    ('CREATE INDEX ix_time_tracking_entry_categories_category_gid ON '
     'time_tracking_entry_categories (category_gid)'),
    ('CREATE TABLE timesheet_approval_statuses (\n'
     '\tgid VARCHAR(64) NOT NULL, \n'
     '\tuser_gid VARCHAR(64) NOT NULL, \n'
     '\tstart_date DATE NOT NULL, \n'
     '\tend_date DATE NOT NULL, \n'
     '\tapproval_status VARCHAR(16) NOT NULL, \n'
     '\tCONSTRAINT pk_timesheet_approval_statuses PRIMARY KEY (gid)\n'
     ')'),
    ('CREATE INDEX ix_timesheet_approval_statuses_user_gid_start_date ON '
     'timesheet_approval_statuses (user_gid, start_date)'),
    ('CREATE TABLE rates (\n'
     '\tgid VARCHAR(64) NOT NULL, \n'
     '\tparent_gid VARCHAR(64) NOT NULL, \n'
     '\tresource_gid VARCHAR(64) NOT NULL, \n'
     '\trate NUMERIC(18, 6), \n'
     '\tcurrency_code VARCHAR(8), \n'
     '\tCONSTRAINT pk_rates PRIMARY KEY (gid)\n'
     ')'),
    'CREATE INDEX ix_rates_parent_gid_resource_gid ON rates (parent_gid, resource_gid)',
    ('CREATE VIEW v_time_tracking_entries AS \n'
     '        SELECT e.gid, e.duration_minutes, e.duration_minutes / 60.0 AS '
     'duration_hours,\n'
     "               e.entered_on, date(e.entered_on, '-' || ((CAST(strftime('%w', "
     "e.entered_on) AS INTEGER) + 6) % 7) || ' days') AS entered_week, strftime('%Y-%m', "
     'e.entered_on) AS entered_month,\n'
     '               e.attributable_to_gid, e.attributable_to_name, e.created_by_gid,\n'
     '               e.created_by_name, e.task_gid, e.task_name, e.billable_status,\n'
     '               COALESCE(e.approval_status, w.approval_status) AS approval_status,\n'
     '               e.description, e.created_at,\n'
     '               e.duration_minutes * r.rate / 60.0 AS cost, r.currency_code,\n'
     '               e.first_seen_at, e.updated_at\n'
     '        FROM time_tracking_entries e\n'
     '        LEFT JOIN (SELECT user_gid, start_date, MAX(approval_status) AS '
     'approval_status\n'
     '                   FROM timesheet_approval_statuses GROUP BY user_gid, start_date) '
     'w\n'
     '               ON w.user_gid = e.created_by_gid AND w.start_date = '
     "date(e.entered_on, '-' || ((CAST(strftime('%w', e.entered_on) AS INTEGER) + 6) % 7) "
     "|| ' days')\n"
     '        LEFT JOIN (SELECT parent_gid, resource_gid, MAX(rate) AS rate,\n'
     '                          MAX(currency_code) AS currency_code\n'
     '                   FROM rates GROUP BY parent_gid, resource_gid) r\n'
     '               ON r.parent_gid = e.attributable_to_gid AND r.resource_gid = '
     'e.created_by_gid\n'
     '        WHERE e.deleted_at IS NULL'),
    ('CREATE VIEW v_monthly_hours_by_project AS \n'
     '        SELECT entered_month, attributable_to_gid, attributable_to_name, '
     'SUM(duration_hours) AS hours,\n'
     "               SUM(CASE WHEN billable_status = 'billable' THEN duration_hours ELSE "
     '0 END) AS billable_hours,\n'
     "               SUM(CASE WHEN billable_status = 'nonBillable' THEN duration_hours "
     'ELSE 0 END) AS non_billable_hours,\n'
     "               SUM(CASE WHEN approval_status = 'APPROVED' THEN duration_hours ELSE "
     '0 END) AS approved_hours,\n'
     '               SUM(cost) AS cost, MAX(currency_code) AS currency_code, COUNT(*) AS '
     'entries\n'
     '        FROM v_time_tracking_entries\n'
     '        GROUP BY entered_month, attributable_to_gid, attributable_to_name'),
    ('CREATE VIEW v_weekly_hours_by_user AS \n'
     '        SELECT entered_week, created_by_gid, created_by_name, SUM(duration_hours) '
     'AS hours,\n'
     "               SUM(CASE WHEN approval_status = 'APPROVED' THEN duration_hours ELSE "
     '0 END) AS approved_hours,\n'
     "               SUM(CASE WHEN billable_status = 'billable' THEN duration_hours ELSE "
     '0 END) AS billable_hours,\n'
     '               COUNT(*) AS entries\n'
     '        FROM v_time_tracking_entries\n'
     '        GROUP BY entered_week, created_by_gid, created_by_name'),
    ('CREATE VIEW v_monthly_hours_by_category AS \n'
     '        SELECT v.entered_month, c.gid AS category_gid, c.name AS category_name,\n'
     '               SUM(v.duration_hours) AS hours,\n'
     '               COUNT(*) AS entries\n'
     '        FROM v_time_tracking_entries v\n'
     '        JOIN time_tracking_entry_categories ec ON ec.entry_gid = v.gid\n'
     '        JOIN time_tracking_categories c ON c.gid = ec.category_gid\n'
     '        GROUP BY v.entered_month, c.gid, c.name'),
    "INSERT INTO alembic_version (version_num) VALUES ('0010')",
)
# --- generated: end -------------------------------------------------------------------


def dump(connection: sa.Connection) -> list[str]:
    """The statements that make the schema of `connection`'s SQLite database."""
    statements = list(connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY rowid").scalars())
    for (version,) in connection.exec_driver_sql("SELECT version_num FROM alembic_version"):
        statements.append(f"INSERT INTO alembic_version (version_num) VALUES ('{version}')")
    return statements


def _literal(statement: str, width: int = 84) -> str:
    """`statement` as Python source: a string literal in pieces of about `width`."""
    pieces: list[str] = []
    for line in statement.splitlines(keepends=True):
        while len(line) > width and " " in line[1:width]:
            cut = line.rindex(" ", 1, width) + 1
            pieces.append(line[:cut])
            line = line[cut:]
        pieces.append(line)
    if len(pieces) == 1:
        return f"    {pieces[0]!r},\n"
    return "    (" + "\n     ".join(repr(piece) for piece in pieces) + "),\n"


def regenerate() -> None:
    """Rewrite this file's `REVISION` and `STATEMENTS` from the migrations."""
    import tempfile

    from alembic import command

    from etl.store import engines, migrate

    with tempfile.TemporaryDirectory() as folder:
        engine = engines.make_engine(f"sqlite:///{folder}/head.db")
        with migrate.migration_connection(engine) as connection:
            command.upgrade(migrate.alembic_config(connection), "head")
        with engine.connect() as connection:
            statements = dump(connection)
        engine.dispose()
    begin, end = "# --- generated: from here", "# --- generated: end"
    path = Path(__file__)
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    first_line, _, _ = rest.partition("\n")
    body = "".join(_literal(statement) for statement in statements)
    generated = (f"{begin}{first_line}\n#: The revision these statements make.\n"
                 f"REVISION = {migrate.HEAD_REVISION!r}\n\n"
                 f"STATEMENTS: tuple[str, ...] = (\n{body})\n")
    path.write_text(f"{head}{generated}{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    regenerate()
