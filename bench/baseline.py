"""The naive sequential reader people write today, for comparison in bench/bench.py.

One scope at a time, one page at a time, each page inserted and committed before the
next request; it only waits on a 429 because it would fail otherwise. Prints one JSON
line: entries, seconds, requests.

    python bench/baseline.py '{"base_url": ..., "token": ..., "users": [...]}' out.db
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

import requests


def main() -> None:
    info, database = json.loads(sys.argv[1]), sys.argv[2]
    db = sqlite3.connect(database)
    db.execute(
        "CREATE TABLE IF NOT EXISTS entries (gid TEXT PRIMARY KEY, duration_minutes INTEGER, "
        "entered_on TEXT, attributable_to_gid TEXT, created_by_gid TEXT, raw TEXT)"
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    started, entries, requests_made = time.monotonic(), 0, 0
    for user in info["users"]:
        params = {"user": user, "limit": 100, "opt_fields": "attributable_to,created_by,"
                  "duration_minutes,entered_on"}
        while True:
            response = session.get(info["base_url"] + "/time_tracking_entries", params=params)
            requests_made += 1
            if response.status_code == 429:
                time.sleep(float(response.headers.get("Retry-After", 1)))
                continue
            response.raise_for_status()
            body = response.json()
            db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                [(e["gid"], e["duration_minutes"], e["entered_on"],
                  (e.get("attributable_to") or {}).get("gid"), e["created_by"]["gid"],
                  json.dumps(e)) for e in body["data"]],
            )
            db.commit()
            entries += len(body["data"])
            if not body.get("next_page"):
                break
            params["offset"] = body["next_page"]["offset"]
    print(json.dumps({"entries": entries, "seconds": time.monotonic() - started,
                      "requests": requests_made}))


if __name__ == "__main__":
    main()
