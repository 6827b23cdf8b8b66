"""Benchmarks, run by hand (never part of the test suite): python bench/bench.py SCENARIO

Every measurement starts a fresh simulated Asana in its own process
(`python -m etl.simulator`) and runs the real command line (`python -m etl sync`) in
another, so the figures include process start, migrations, the rate limiter, the
loader and the database. Peak RSS is given for the larger of the run's process and its
fetcher process (ru_maxrss, exact), and for both together (PSS, sampled every 20 ms).

Scenarios:
  rate        40 scopes of ~1,000 entries, 200 ms latency, Asana's 1,500/min scaled to
              150 per 6 s; the tool vs. a naive sequential reader (bench/baseline.py)
  memory      peak RSS of a sync of 100,000 and of 1,000,000 entries (zero latency)
  throughput  zero-latency end-to-end rate and load-stage rate into SQLite and
              PostgreSQL, first sync and a re-sync of unchanged data: entries/s over
              the whole command (interpreter start and imports included) and over the
              run itself (from its run row to its end, as its log says)
Prints one table a scenario; medians over --repeat runs.
"""

from __future__ import annotations

import argparse
import json
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


def run_tool(sim: Simulator, database_url: str, rpm: int, work: Path) -> dict:
    users = ", ".join(f'"{u}"' for u in sim.info["users"])
    config = work / "config.toml"
    config.write_text(
        f'[asana]\nbase_url = "{sim.info["base_url"]}"\nrequests_per_minute = {rpm}\n'
        f'[database]\nurl = "{database_url}"\n[scopes]\nusers = [{users}]\n'
    )
    env = {**os.environ, "ASANA_ACCESS_TOKEN": sim.info["token"]}
    log = work / "sync.log"
    started = time.monotonic()
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "etl", "--log-format", "json", "--log-level", "info",
             "--config", str(config), "sync"],
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
    return {"seconds": seconds, "entries": finished["entries"],
            "run_seconds": finished["seconds"],
            "load_seconds": finished["load_seconds"], "rss_mb": usage.ru_maxrss / 1024,
            "tree_pss_mb": sampler.peak_mb}


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
    print(f"\nrate: {args.scopes} scopes x ~{args.per_scope} entries, {args.latency * 1000:.0f} ms "
          f"latency, limit {args.limit} (= {per_minute:.0f}/min), median of {args.repeat}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["rate", "memory", "throughput", "all"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scopes", type=int, default=40)
    parser.add_argument("--per-scope", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--limit", default="150/6")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--entries", type=int, default=200000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d')}")
    if args.scenario in ("rate", "all"):
        scenario_rate(args)
    if args.scenario in ("throughput", "all"):
        scenario_throughput(args)
    if args.scenario in ("memory", "all"):
        scenario_memory(args)


if __name__ == "__main__":
    main()
