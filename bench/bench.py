"""Benchmarks, run by hand (never part of the test suite): python bench/bench.py SCENARIO

Every measurement starts a fresh simulated Asana in its own process
(`python -m etl.simulator`) and runs the real command line (`python -m etl sync`) in
another, so the figures include process start, migrations, the rate limiter, the
loader and the database. Peak RSS is given for the larger of the run's process and its
fetcher process (ru_maxrss, exact), and for both together (PSS, sampled every 20 ms).

Scenarios:
  rate        40 user scopes, 40,000 entries (skewed users), 200 ms latency, Asana's
              1,500/min scaled to 150 per 6 s; the tool vs. a naive sequential reader
              (bench/baseline.py)
  memory      peak RSS of a sync of 100,000 and of 1,000,000 entries (zero latency)
  throughput  zero-latency end-to-end rate and load-stage rate into SQLite and
              PostgreSQL, first sync and a re-sync of unchanged data: entries/s over
              the whole command (interpreter start and imports included) and over the
              run itself (from its run row to its end, as its log says)

The five that follow read two years of data shaped like real data (users skewed ten to
one, entries made on or near their day, gids in the order entries were made), from a
simulated Asana with 200 ms latency and the limit scaled to 150 requests per 6 s; each
reports entries/s as a share of Asana's ceiling (1,500 requests a minute x 100 entries
= 2,500 a second), over the whole command and over the span of its requests, the
requests sent against the pages the data needed (each scope's window read by one
listing), and 429s; and checks the tables against the simulated data.
  workspace   one workspace scope of 40,000 entries: a first sync (no history: listings
              split on their first page), then a second (sized by the database)
  skewed      40 user scopes of about 450 to 4,500 entries: a first sync and a second
  backfill    `backfill --since/--until` of 90 days over 20 users, into an empty database
  recent      after a full sync and a month of edits, inserts and deletions (and some
              to older entries), `sync --recent 30` against a full nightly `sync`
  history     one workspace scope of 40,000 entries: a backfill of the last full
              quarter into an empty database, then the first full sync (the database
              knows a quarter of two years: the rest must be probed, not taken as empty)
  details     entries' details (one request each) at 200 ms and 150 per 6 s: the first
              read of 20,000 as a share of the limit; a nightly sync with details on
              against one without, after a month of changes (requests for details
              against new + changed + the refresh set; when the listings ended); a
              backlog of 4,000 drained at max_requests = 1,000 (about 20 minutes in all)
  deletions   the sync that confirms, one request each, entries deleted in Asana from one
              workspace scope: 80,000 of 100,000 at zero latency with no rate limit, and
              1,000 of 10,000 at 200 ms and the scaled limit (requests a second over the
              span against its 25)
  vs-dlt      the same work through dlt's REST API source into SQLite, side by side, at
              zero latency and at 200 ms (bench/vs_dlt.py says how; not in "all": it
              installs dlt into a venv of its own, bench/vs-dlt/.venv)
Prints one table a scenario; medians over --repeat runs. ASANA_ETL_BENCH_CODE=DIR runs
the command line of the checkout in DIR instead (an A/B against the same simulator).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("ASANA_ETL_BENCH_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Simulator:
    def __init__(self, entries: int, users: int, latency: float = 0.0,
                 rate_limit: str | None = None) -> None:
        args = [sys.executable, "-m", "etl.simulator", "--entries", str(entries), "--users",
                str(users), "--latency", str(latency)]
        if rate_limit:
            args += ["--rate-limit", rate_limit]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.info = json.loads(self.process.stdout.readline())

    def stats(self) -> dict:
        url = self.info["base_url"].replace("/api/1.0", "") + "/_simulator/stats"
        with urllib.request.urlopen(url) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def run_tool(sim: Simulator, database_url: str, rpm: int, work: Path,
             scopes: str | None = None, command: tuple[str, ...] = ("sync",),
             sections: str = "") -> dict:
    """One run of the real command line against `sim`: `command` over `scopes` (a
    `[scopes]` TOML body; default: every user); `sections`: more of the config (TOML)."""
    if scopes is None:
        scopes = "users = [" + ", ".join(f'"{u}"' for u in sim.info["users"]) + "]"
    config = work / "config.toml"
    config.write_text(
        f'[asana]\nbase_url = "{sim.info["base_url"]}"\nrequests_per_minute = {rpm}\n'
        f'[database]\nurl = "{database_url}"\n{sections}[scopes]\n{scopes}\n'
    )
    env = {**os.environ, "ASANA_ACCESS_TOKEN": sim.info["token"]}
    if os.environ.get("ASANA_ETL_BENCH_CODE"):  # A/B: the command line of another checkout
        env["PYTHONPATH"] = os.environ["ASANA_ETL_BENCH_CODE"]
    log = work / "sync.log"
    started = time.monotonic()
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "etl", "--log-format", "json", "--log-level", "info",
             "--config", str(config), *command],
            stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=work,
        )
        sampler = TreePss(process.pid)
        # wait4, not Popen.wait: it returns this process's own resource usage
        _, status, usage = os.wait4(process.pid, 0)
        sampler.stop()
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text().splitlines()
    if process.returncode != 0:
        raise SystemExit(f"sync failed ({process.returncode}):\n" + "\n".join(lines[-20:]))
    finished = next(json.loads(line) for line in lines[::-1] if '"run_finished"' in line)
    # ru_maxrss: the larger of the run's process and its fetcher, each at its peak
    # (.get: a run of code from before entry details, for A/B, has no such keys)
    return {"seconds": seconds, "entries": finished["entries"],
            "run_seconds": finished["seconds"],
            "details_requests": finished.get("details_requests", 0),
            "details_backlog": finished.get("details_backlog", 0),
            "requests_by_kind": finished.get("requests_by_kind", {}),
            "load_seconds": finished["load_seconds"], "rss_mb": usage.ru_maxrss / 1024,
            "tree_pss_mb": sampler.peak_mb,
            # user + system of the run's process and its fetcher (reaped by it)
            "cpu": usage.ru_utime + usage.ru_stime}


class TreePss:
    """Samples the memory of a process plus its children (the fetcher) every 20 ms;
    `peak_mb` is the largest sum seen. Proportional set size (PSS), not RSS: the forked
    fetcher shares its parent's pages (the interpreter, the libraries), and a sum of RSS
    would count those twice."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.02):
            try:
                children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            except OSError:
                continue
            total = sum(_pss_kb(pid) for pid in [str(self.pid), *children])
            self.peak_mb = max(self.peak_mb, total / 1024)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _pss_kb(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_baseline(sim: Simulator, work: Path) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "baseline.py"),
                          json.dumps(sim.info), str(work / "baseline.db")],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def measure(kind: str, entries: int, users: int, latency: float, rate_limit: str | None,
            rpm: int, database: str, work: Path) -> dict:
    sim = Simulator(entries, users, latency, rate_limit)
    try:
        if kind == "tool":
            result = run_tool(sim, database, rpm, work)
        else:
            result = run_baseline(sim, work)
        stats = sim.stats()
    finally:
        sim.close()
    span = max(1e-9, (stats["last"] or 0) - (stats["first"] or 0))
    result["requests"] = stats["requests"]
    result["rate_limited"] = stats["by_status"].get("429", 0)
    result["requests_per_min"] = stats["requests"] / span * 60
    return result


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results if key in r)


def scenario_rate(args) -> None:
    limit_count, limit_seconds = (float(x) for x in args.limit.split("/"))
    per_minute = limit_count / limit_seconds * 60
    rows = {}
    for kind in ("tool", "baseline"):
        results = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(measure(kind, args.scopes * args.per_scope, args.scopes,
                                       args.latency, args.limit, int(per_minute),
                                       f"sqlite:///{tmp}/bench.db", Path(tmp)))
        rows[kind] = results
    print(f"\nrate: {args.scopes} user scopes, {args.scopes * args.per_scope:,} entries (users "
          f"skewed ten to one), {args.latency * 1000:.0f} ms latency, limit {args.limit} "
          f"(= {per_minute:.0f}/min), median of {args.repeat}")
    print(f"{'':10} {'entries/s':>10} {'req/min':>8} {'util %':>7} {'429 %':>6} {'seconds':>8} "
          f"{'RSS MB':>7} {'load rows/s':>12}")
    for kind, results in rows.items():
        rps = median(results, "requests_per_min")
        r429 = statistics.median(r["rate_limited"] / r["requests"] * 100 for r in results)
        eps = statistics.median(r["entries"] / r["seconds"] for r in results)
        load = (statistics.median(r["entries"] / r["load_seconds"] for r in results)
                if kind == "tool" else float("nan"))
        rss = median(results, "rss_mb") if kind == "tool" else float("nan")
        print(f"{kind:10} {eps:10.0f} {rps:8.0f} {rps / per_minute * 100:7.1f} {r429:6.2f} "
              f"{median(results, 'seconds'):8.1f} {rss:7.0f} {load:12.0f}")
    tool = statistics.median(r["entries"] / r["seconds"] for r in rows["tool"])
    base = statistics.median(r["entries"] / r["seconds"] for r in rows["baseline"])
    print(f"speed-up over the sequential baseline: {tool / base:.1f}x")


def scenario_memory(args) -> None:
    print(f"\nmemory: zero latency, {args.users} scopes, one run each")
    print(f"{'entries':>10} {'seconds':>8} {'entries/s':>10} {'peak RSS MB':>12} "
          f"{'both, PSS MB':>13}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            r = measure("tool", size, args.users, 0.0, None, 10_000_000,
                        f"sqlite:///{tmp}/bench.db", Path(tmp))
        print(f"{size:10d} {r['seconds']:8.1f} {r['entries'] / r['seconds']:10.0f} "
              f"{r['rss_mb']:12.0f} {r['tree_pss_mb']:13.0f}")


def scenario_throughput(args) -> None:
    print(f"\nthroughput: {args.entries} entries, {args.users} scopes, zero latency, "
          f"rate limit out of the way, median of {args.repeat}")
    print(f"{'backend':12} {'run':10} {'entries/s':>10} {'in the run':>11} {'load rows/s':>12} "
          f"{'seconds':>8}")
    for backend in args.backends.split(","):
        firsts, seconds_ = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                url, cleanup = _database(backend, tmp)
                try:
                    sim = Simulator(args.entries, args.users)
                    try:
                        firsts.append(run_tool(sim, url, 10_000_000, Path(tmp)))
                        seconds_.append(run_tool(sim, url, 10_000_000, Path(tmp)))
                    finally:
                        sim.close()
                finally:
                    cleanup()
        for name, results in (("first", firsts), ("unchanged", seconds_)):
            eps = statistics.median(r["entries"] / r["seconds"] for r in results)
            in_run = statistics.median(r["entries"] / r["run_seconds"] for r in results)
            load = statistics.median(r["entries"] / r["load_seconds"] for r in results)
            print(f"{backend:12} {name:10} {eps:10.0f} {in_run:11.0f} {load:12.0f} "
                  f"{median(results, 'seconds'):8.1f}")


def _database(backend: str, tmp: str):
    if backend == "sqlite":
        return f"sqlite:///{tmp}/bench.db", lambda: None
    import sqlalchemy as sa

    schema = f"bench_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def cleanup() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    return f"{PG_URL}?options=-csearch_path%3D{schema}", cleanup


# --- the listing scenarios: two years of skewed data, 200 ms, 150 requests per 6 s --------

CEILING = 2500.0  # entries a second: 1,500 requests a minute, 100 entries each
TODAY = dt.datetime.now(dt.UTC).date()


class Served:
    """The simulated Asana in this process (a thread), so that a scenario can edit its
    data between runs. At 25 requests a second it needs little CPU; the runs are other
    processes."""

    def __init__(self, data, latency: float, limit: str) -> None:
        from etl.simulator import AsanaSimulator

        count, seconds = limit.split("/")
        data.entries_json(list(data.entries), _fields())  # serialised once, up front
        self.server = AsanaSimulator(data, latency=latency,
                                     rate_limit=(int(count), float(seconds))).start()
        self.data = data
        self.info = {"base_url": self.server.base_url, "token": self.server.token,
                     "users": list(data.users), "workspace": data.workspace_gid}

    def stats(self) -> dict:
        return self.server.stats()

    def reset(self) -> None:
        with self.server._lock:
            self.server.requests.clear()
            self.server._first = self.server._last = None

    def close(self) -> None:
        self.server.stop()


def _fields() -> set[str]:
    from etl.asana.extract import OPT_FIELDS

    return set(OPT_FIELDS.split(","))


#: The order the simulated Asana lists entries in (--order): "made" (gid order, as a
#: listing in the order entries were made) or "shuffled" (no order a run can use).
ORDER = "made"


def two_years(entries: int, users: int, seed: int = 1):
    from etl.simulator import Dataset

    return Dataset.generate(seed, entries=entries, users=users, projects=max(10, users // 2),
                            tasks=max(60, users * 6), start=TODAY - dt.timedelta(days=729),
                            days=730, order=ORDER)


def pages_needed(data, scopes: list[tuple[str, str]], since: dt.date | None = None,
                 until: dt.date | None = None) -> int:
    """What the data takes at 100 a page, each scope's window read by one listing (an
    empty one still costs a request)."""
    total = 0
    for kind, gid in scopes:
        n = sum(1 for e in data.entries.values()
                if (kind == "workspace" or (kind == "user" and e.user_gid == gid))
                and (since is None or e.entered_on >= since)
                and (until is None or e.entered_on <= until))
        total += max(1, math.ceil(n / 100))
    return total


def exact(data, url: str, since: dt.date | None = None, until: dt.date | None = None) -> bool:
    """Whether the tables hold exactly the simulated entries (of the window)."""
    sys.path.insert(0, str(ROOT))
    from etl.store.engines import make_engine
    from tests.helpers import expected_rows, stored_rows

    engine = make_engine(url)
    try:
        def inside(rows):
            return {g: r for g, r in rows.items() if (since is None or r["entered_on"] >= since)
                    and (until is None or r["entered_on"] <= until)}

        return inside(stored_rows(engine)) == inside(expected_rows(data))
    finally:
        engine.dispose()


def listing_run(sim: Served, url: str, work: Path, scopes: str, needed: int,
                command: tuple[str, ...] = ("sync",)) -> dict:
    """One run, with what the simulator saw of it."""
    sim.reset()
    result = run_tool(sim, url, 1500, work, scopes, command)
    stats = sim.stats()
    span = max(1e-9, (stats["last"] or 0) - (stats["first"] or 0))
    confirms = sum(r.path.count("/") == 4 for r in sim.server.requests)
    result.update(requests=stats["requests"], confirms=confirms,
                  listing=stats["requests"] - confirms,
                  rate_limited=stats["by_status"].get("429", 0), span=span, needed=needed)
    return result


def print_listing_rows(title: str, rows: list[tuple[str, list[dict]]], loaded: int,
                       per_minute: float = 1500.0) -> None:
    """entries/s over the whole command and over the span of its requests, as shares of
    Asana's 2,500/s; "of limit": requests a minute over that span, as a share of the
    limit; the requests to list entries (the preflight included) and to confirm
    deletions, and the first against the pages the data needed."""
    print(f"\n{title}")
    print(f"{'run':26} {'entries/s':>9} {'of 2,500':>8} {'in span':>8} {'of limit':>8} "
          f"{'listing':>7} {'confirm':>7} {'needed':>6} {'ratio':>6} {'429 %':>6} "
          f"{'seconds':>7} {'exact':>5}")
    for name, results in rows:
        eps = statistics.median(loaded / r["seconds"] for r in results)
        span = statistics.median(loaded / r["span"] for r in results)
        util = statistics.median(r["requests"] / r["span"] * 60 / per_minute for r in results)
        listing = statistics.median(r["listing"] for r in results)
        r429 = statistics.median(r["rate_limited"] / max(1, r["requests"]) * 100 for r in results)
        needed = results[0]["needed"]
        print(f"{name:26} {eps:9.0f} {eps / CEILING * 100:7.1f}% {span / CEILING * 100:7.1f}% "
              f"{util * 100:7.1f}% {listing:7.0f} {median(results, 'confirms'):7.0f} "
              f"{needed:6d} {listing / needed:6.2f} {r429:6.2f} {median(results, 'seconds'):7.1f} "
              f"{'yes' if all(r['exact'] for r in results) else 'NO':>5}")


def scopes_toml(scopes: list[tuple[str, str]]) -> str:
    """The `[scopes]` body for a workspace and user scopes."""
    lines = [f'workspace = "{gid}"' for kind, gid in scopes if kind == "workspace"]
    users = [gid for kind, gid in scopes if kind == "user"]
    if users:
        lines.append("users = [" + ", ".join(f'"{u}"' for u in users) + "]")
    return "\n".join(lines)


def first_and_second(args, make_data, scopes_of) -> tuple[list[tuple[str, list[dict]]], object]:
    """A first sync into an empty database and a second over the same data, --repeat
    times: `make_data(repeat)` builds the dataset, `scopes_of(data)` the scopes as
    (kind, gid) pairs. Returns the rows to print, and the last dataset."""
    rows: dict[str, list[dict]] = {"first sync": [], "second sync": []}
    for repeat in range(args.repeat):
        data = make_data(repeat)
        sim = Served(data, args.latency, args.limit)
        scopes = scopes_of(data)
        needed = pages_needed(data, scopes)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                for name in rows:
                    r = listing_run(sim, url, Path(tmp), scopes_toml(scopes), needed)
                    r["exact"] = exact(data, url)
                    rows[name].append(r)
        finally:
            sim.close()
    return list(rows.items()), data


def scenario_workspace(args) -> None:
    rows, _ = first_and_second(args, lambda repeat: two_years(40_000, 40),
                               lambda data: [("workspace", data.workspace_gid)])
    print_listing_rows(f"workspace: one workspace scope of 40,000 entries over two years, "
                       f"median of {args.repeat}", rows, 40_000)


def scenario_skewed(args) -> None:
    rows, data = first_and_second(args, lambda repeat: two_years(37_500, 40, seed=1 + repeat),
                                  lambda data: [("user", u) for u in data.users])
    sizes = sorted(sum(e.user_gid == u for e in data.entries.values()) for u in data.users)
    print_listing_rows(f"skewed: 40 user scopes of {sizes[0]:,} to {sizes[-1]:,} entries "
                       f"(37,500 in all), median of {args.repeat} datasets", rows, 37_500)


def scenario_backfill(args) -> None:
    since, until = TODAY - dt.timedelta(days=120), TODAY - dt.timedelta(days=31)
    results = []
    for _ in range(args.repeat):
        data = two_years(20_000, 20)
        sim = Served(data, args.latency, args.limit)
        users = [("user", u) for u in data.users]
        needed = pages_needed(data, users, since, until)
        loaded = sum(1 for e in data.entries.values() if since <= e.entered_on <= until)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                r = listing_run(sim, url, Path(tmp), None, needed,
                                ("backfill", "--since", str(since), "--until", str(until)))
                r["exact"] = exact(data, url, since, until)
                results.append(r)
        finally:
            sim.close()
    print_listing_rows(f"backfill: {since}..{until} (90 days) over 20 users, 20,000 entries in "
                       f"two years, {loaded:,} in the window; bar: at most "
                       f"{math.floor(1.25 * needed) + 2 * 20} requests, median of {args.repeat}",
                       [("backfill --since/--until", results)], loaded)


def scenario_history(args) -> None:
    """The first full sync of a database that knows part of the days, after a backfill of
    the last full quarter (a `sync --recent N` first night reads in full: every scope's
    full read is due)."""
    until = dt.date(TODAY.year, 3 * ((TODAY.month - 1) // 3) + 1, 1) - dt.timedelta(days=1)
    since = dt.date(until.year, until.month - 2, 1)
    rows: dict[str, list[dict]] = {"backfill": [], "then the first full sync": []}
    for repeat in range(args.repeat):
        data = two_years(40_000, 40, seed=1 + repeat)
        sim = Served(data, args.latency, args.limit)
        scope = [("workspace", data.workspace_gid)]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                r = listing_run(sim, url, Path(tmp), scopes_toml(scope),
                                pages_needed(data, scope, since, until),
                                ("backfill", "--since", str(since), "--until", str(until)))
                r["exact"] = exact(data, url, since, until)
                rows["backfill"].append(r)
                r = listing_run(sim, url, Path(tmp), scopes_toml(scope),
                                pages_needed(data, scope), ("sync", "--recent", "0"))
                r["exact"] = exact(data, url)
                rows["then the first full sync"].append(r)
        finally:
            sim.close()
    quarter = sum(1 for e in data.entries.values() if since <= e.entered_on <= until)
    print_listing_rows(f"history: one workspace scope of 40,000 entries over two years: "
                       f"backfill {since}..{until} ({quarter:,} entries), median of {args.repeat}",
                       [("backfill", rows["backfill"])], quarter)
    print_listing_rows("then the first full sync of the 40,000 (bar: 85 % of 2,500/s)",
                       [("first full sync", rows["then the first full sync"])], 40_000)


def mutate_month(data, rng) -> dict[str, int]:
    """A month of a team's changes: edits, inserts and deletions in the last 30 days, and
    a few to older entries (which only a full read can see)."""
    recent = TODAY - dt.timedelta(days=29)
    new_entries = [e for e in data.entries.values() if e.entered_on >= recent]
    old_entries = [e for e in data.entries.values() if e.entered_on < recent]
    for e in rng.sample(new_entries, 60):
        data.edit_entry(e.gid, duration_minutes=e.duration_minutes + 15)
    gone = rng.sample([e for e in new_entries if e.gid in data.entries], 40)
    for e in gone:
        data.delete_entry(e.gid)
    moved_out = rng.sample([e for e in new_entries if e.gid in data.entries], 5)
    for e in moved_out:  # re-dated to before the window: found by its confirmation
        data.edit_entry(e.gid, entered_on=recent - dt.timedelta(days=40))
    tasks, users = list(data.tasks), list(data.users)
    for i in range(80):
        data.add_entry(rng.choice(tasks), rng.choice(users), 30 + i,
                       TODAY - dt.timedelta(days=rng.randrange(30)))
    for e in rng.sample(old_entries, 20):
        data.edit_entry(e.gid, duration_minutes=e.duration_minutes + 5)
    for e in rng.sample(old_entries, 10):
        data.delete_entry(e.gid)
    return {"deleted_in_window": len(gone), "moved_out": len(moved_out)}


def scenario_recent(args) -> None:
    import random

    recent = TODAY - dt.timedelta(days=29)
    rows: dict[str, list[dict]] = {"sync --recent 30": [], "next full sync": [],
                                   "full nightly sync": []}
    for repeat in range(args.repeat):
        data = two_years(30_000, 20, seed=7 + repeat)
        sim = Served(data, args.latency, args.limit)
        users = [("user", u) for u in data.users]
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.db"
                work = Path(tmp)
                listing_run(sim, url, work, None, 1)  # the first, full sync
                changed = mutate_month(data, random.Random(repeat))
                needed = pages_needed(data, users, since=recent)
                r = listing_run(sim, url, work, None, needed, ("sync", "--recent", "30"))
                # every change of those days is in; the older ones wait for a full read
                r["exact"] = exact(data, url, since=recent)
                r["confirmations"] = changed["deleted_in_window"] + changed["moved_out"]
                rows["sync --recent 30"].append(r)
                full_needed = pages_needed(data, users)
                r = listing_run(sim, url, work, None, full_needed, ("sync", "--recent", "0"))
                r["exact"] = exact(data, url)
                rows["next full sync"].append(r)
                r = listing_run(sim, url, work, None, full_needed, ("sync", "--recent", "0"))
                r["exact"] = exact(data, url)
                rows["full nightly sync"].append(r)
        finally:
            sim.close()
    first = rows["sync --recent 30"][0]
    loaded = sum(1 for e in data.entries.values() if e.entered_on >= recent)
    print_listing_rows(
        f"recent: 20 users, 30,000 entries in two years, {loaded:,} in the last 30 days; bar "
        f"for --recent 30: at most {math.floor(1.25 * first['needed']) + 2 * 20} + "
        f"{first['confirmations']} confirmations; median of {args.repeat} (entries/s: of the "
        "window's entries, for every row)", list(rows.items()), loaded)


def scenario_deletions(args) -> None:
    import random

    cases = [("zero latency, no limit", 100_000, 80_000, 0.0, "1000000/1", 10_000_000),
             ("200 ms, 150 per 6 s", 10_000, 1_000, args.latency, args.limit, 1500)]
    print(f"\ndeletions: entries deleted in Asana, each confirmed by the next sync; median of "
          f"{args.repeat}")
    print(f"{'case':26} {'entries':>8} {'deleted':>8} {'seconds':>8} {'requests':>9} "
          f"{'req/s':>7} {'exact':>5}")
    for name, entries, gone, latency, limit, rpm in cases:
        results = []
        for _ in range(args.repeat):
            data = two_years(entries, 20)
            sim = Served(data, latency, limit)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    url = f"sqlite:///{tmp}/bench.db"
                    scopes = f'workspace = "{data.workspace_gid}"'
                    run_tool(sim, url, rpm, Path(tmp), scopes)
                    for gid in random.Random(1).sample(sorted(data.entries), gone):
                        data.delete_entry(gid)
                    sim.reset()
                    r = run_tool(sim, url, rpm, Path(tmp), scopes)
                    stats = sim.stats()
                    r["requests"] = stats["requests"]
                    r["rps"] = stats["requests"] / max(1e-9, stats["last"] - stats["first"])
                    r["exact"] = exact(data, url)
                    results.append(r)
            finally:
                sim.close()
        print(f"{name:26} {entries:8,d} {gone:8,d} {median(results, 'seconds'):8.1f} "
              f"{median(results, 'requests'):9.0f} {median(results, 'rps'):7.1f} "
              f"{'yes' if all(r['exact'] for r in results) else 'NO':>5}")


# --- entry details: the single GET an entry, in the gaps of the budget ---------------------

DETAILS_PATH = "/api/1.0/time_tracking_entries/"


def details_section(max_requests: int, workspace: str | None = None) -> str:
    """Entry details on; with `workspace`, categories, timesheets and rates too."""
    everything = (f'categories = true\ntimesheets = true\nrates = true\nworkspace = "{workspace}"\n'
                  if workspace else "")
    return f"[details]\nentries = true\nmax_requests = {max_requests}\n{everything}"


def split_requests(sim: Served) -> tuple[list[float], list[float]]:
    """When each request of the entries' listings and each entry's details' single GET
    (not a deletion confirmation's) was answered."""
    listing = [r.at for r in sim.server.requests if r.path == DETAILS_PATH.rstrip("/")]
    single = [r.at for r in sim.server.requests if r.path.startswith(DETAILS_PATH)
              and "billable_status" in r.params.get("opt_fields", "")]
    return listing, single


def refresh_size(data, days: int = 35) -> int:
    since = TODAY - dt.timedelta(days=days - 1)
    return sum(1 for e in data.entries.values()
               if e.entered_on >= since and data.approval_status(e) != "APPROVED")


def scenario_details(args) -> None:
    """The first read of 20,000 entries' details at Asana's pace; a nightly sync with
    details on against one without, on the same data after a month of changes; a backlog
    drained over nights under a cap."""
    import random
    import shutil

    data = two_years(20_000, 20)
    sim = Served(data, args.latency, args.limit)
    scope = f'workspace = "{data.workspace_gid}"'
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work, db = Path(tmp), Path(tmp) / "bench.db"
            url = f"sqlite:///{db}"
            sim.reset()
            first = run_tool(sim, url, 1500, work, scope, sections=details_section(0))
            listing, single = split_requests(sim)
            span = max(1e-9, max(single) - min(single))
            print("\ndetails: entry details at 200 ms, 150 requests per 6 s (1,500 a minute)")
            print(f"first read of {len(data.entries):,} entries' details: {len(single):,} single "
                  f"GETs ({len(single) / len(data.entries):.3f} an entry) in {span:.0f} s: "
                  f"{len(single) / span * 60:,.0f} a minute, "
                  f"{len(single) / span * 60 / 1500 * 100:.1f} % of the limit; whole command "
                  f"{first['seconds']:.0f} s, backlog after {first['details_backlog']}")
            rng = random.Random(3)
            mutate_month(data, rng)
            recent = [e for e in data.entries.values()
                      if e.entered_on >= TODAY - dt.timedelta(days=20)]
            for e in rng.sample(recent, 30):  # billable flags flipped: only a re-read sees them
                data.edit_entry(e.gid, billable_status="nonBillable"
                                if e.billable_status == "billable" else "billable")
            # new, changed (a listing sees the last two only in a full read), the refresh set
            bound = 80 + 60 + 5 + 20 + refresh_size(data)
            shutil.copy(db, work / "before.db")
            rows = []
            everything = details_section(0, data.workspace_gid)
            for name, sections in (("details off", ""), ("details on", details_section(0)),
                                   ("everything, 1st", everything),
                                   ("everything", everything)):
                if name != "everything":  # the night after everything's first: from there
                    shutil.copy(work / "before.db", db)
                sim.reset()
                r = run_tool(sim, url, 1500, work, scope, sections=sections)
                listing, single = split_requests(sim)
                start = min(listing)
                rows.append((name, r, max(listing) - start, len(single)))
            print(f"a nightly sync after a month of changes (80 new, 85 changed, 30 billable "
                  f"flags flipped; refresh set {refresh_size(data):,}; bound for details: "
                  f"{bound:,} requests):")
            for name, r, listings_end, singles in rows:
                print(f"  {name:15} listings ended {listings_end:6.1f} s after the first "
                      f"request; details' GETs {singles:5,d}; whole command {r['seconds']:6.1f} s")
                kinds = ", ".join(f"{kind} {n:,}" for kind, n in r["requests_by_kind"].items())
                print(f"  {'':15} requests by kind: {kinds}")
            users = len({e.user_gid for e in data.entries.values()})
            projects = len({e.attributable_to for e in data.entries.values() if e.attributable_to})
            print(f"  (bar with everything on: categories 2 listings, timesheets a page a user "
                  f"with entries in the re-read weeks (weeks open long ago: a request more): "
                  f"{users}, rates a listing a project: {projects})")
    finally:
        sim.close()

    data = two_years(4_000, 20, seed=5)
    sim = Served(data, args.latency, args.limit)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            url = f"sqlite:///{work / 'bench.db'}"
            print(f"a backlog of {len(data.entries):,} entries drained at max_requests = 1,000:")
            night, backlog = 0, None
            while backlog != 0 and night < 10:
                night += 1
                sim.reset()
                r = run_tool(sim, url, 1500, work, f'workspace = "{data.workspace_gid}"',
                             sections=details_section(1000))
                backlog = r["details_backlog"]
                print(f"  night {night}: {r['details_requests']:5,d} requests for details, "
                      f"backlog after {backlog:5,d}, {r['seconds']:5.1f} s")
    finally:
        sim.close()


def compile_code() -> None:
    """Compile the code under test to bytecode once, before anything is timed, as
    `pip install` does for an installed package: an editable checkout under
    PYTHONDONTWRITEBYTECODE (this machine sets it) compiled its sixty modules from
    source in every run, 0.12 s each time, which no installed asana-etl pays (and which
    the dlt venv, installed by pip, does not pay either)."""
    import compileall

    root = Path(os.environ.get("ASANA_ETL_BENCH_CODE") or ROOT) / "etl"
    if not compileall.compile_dir(str(root), quiet=1):
        raise SystemExit(f"could not compile {root}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["rate", "memory", "throughput", "workspace", "skewed",
                                             "backfill", "recent", "listings", "deletions",
                                             "details", "history", "vs-dlt", "all"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scopes", type=int, default=40)
    parser.add_argument("--per-scope", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--limit", default="150/6")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--entries", type=int, default=200000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--order", choices=["made", "shuffled"], default="made",
                        help="the order listings come in, for the listing scenarios")
    args = parser.parse_args()
    global ORDER
    ORDER = args.order
    compile_code()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d')}; listings in {ORDER} order")
    if args.scenario in ("rate", "all"):
        scenario_rate(args)
    if args.scenario in ("throughput", "all"):
        scenario_throughput(args)
    if args.scenario in ("memory", "all"):
        scenario_memory(args)
    for name in ("workspace", "skewed", "backfill", "recent", "history"):
        if args.scenario in (name, "listings", "all"):
            globals()[f"scenario_{name}"](args)
    if args.scenario in ("deletions", "all"):
        scenario_deletions(args)
    if args.scenario in ("details", "all"):
        scenario_details(args)
    if args.scenario == "vs-dlt":  # not in "all": it installs dlt into a venv of its own
        import vs_dlt

        vs_dlt.scenario(args)


if __name__ == "__main__":
    main()
