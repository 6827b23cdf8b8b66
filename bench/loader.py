"""The load stage alone, without HTTP: python bench/loader.py [DATABASE_URL]

Flattens N simulated entries, then writes them in batches the way a sync does (upsert,
links, seen-marks, one transaction a batch) into a fresh database, twice: a first load,
then the same entries again (unchanged). Prints µs an entry for each step. Run by hand.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from etl.store import engines, migrate, runs
from etl.config import Scope
from etl.asana.extract import OPT_FIELDS
from etl.store.links import link_entries, mark_seen
from etl.store.load import upsert_entries
from etl.simulator import Dataset
from etl.transform import row_values, to_row

BATCH = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", help="a database URL (default: a new SQLite file); "
                        "use an empty schema or database, its tables are created")
    parser.add_argument("--entries", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'loader.db'}"
        run(url, args.entries)


def run(url: str, count: int) -> None:
    data = Dataset.generate(1, entries=count, users=20)
    fields = set(OPT_FIELDS.split(","))
    raws = [orjson.loads(orjson.dumps(data.entry_json(e, fields))) for e in data.entries.values()]
    started = time.perf_counter()
    rows = [row_values(to_row(raw)) for raw in raws]
    print(f"flatten (to_row, row_values): {(time.perf_counter() - started) / count * 1e6:.1f} µs an entry")
    engine = engines.make_engine(url)
    migrate.upgrade(engine)
    scope = Scope("user", "1")
    with engine.begin() as conn:
        run_id = runs.start_run(conn, "sync", 1, runs.utcnow())
    for label in ("first load", "unchanged"):
        spent: Counter[str] = Counter()
        started = time.perf_counter()
        for at in range(0, count, BATCH):
            batch = rows[at:at + BATCH]
            gids = [row[0] for row in batch]
            now = runs.utcnow()
            with engine.begin() as conn:
                t = time.perf_counter()
                upserted = upsert_entries(conn, [(scope, row) for row in batch], now)
                spent["upsert"] += time.perf_counter() - t
                t = time.perf_counter()
                linked_before = link_entries(conn, scope, gids, now, new=upserted.new)
                spent["links"] += time.perf_counter() - t
                t = time.perf_counter()
                mark_seen(conn, run_id, scope, linked_before)
                spent["seen"] += time.perf_counter() - t
                t = time.perf_counter()
            spent["commit"] += time.perf_counter() - t
        total = time.perf_counter() - started
        steps = ", ".join(f"{k} {v / count * 1e6:.1f}" for k, v in spent.items())
        print(f"{label}: {total / count * 1e6:.1f} µs an entry ({count / total:,.0f} rows/s); "
              f"{steps}")
    engine.dispose()


if __name__ == "__main__":
    main()
