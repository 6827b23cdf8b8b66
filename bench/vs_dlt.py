"""`python bench/bench.py vs-dlt`: asana-etl against dlt's REST API source, the same work
side by side in one run.

The same simulated Asana (bench.Served: two years of data shaped like real data, users
skewed ten to one, 30,000 entries over 30 users by default) serves both; each run loads
every user's time tracking entries into a fresh SQLite file, and each is timed as a whole
process (interpreter start, imports, the load, the process's end):

  asana-etl  `python -m etl sync` of the benchmark's venv, as bench.run_tool runs it
             (ASANA_ETL_BENCH_CODE too), one user scope a user, requests_per_minute as
             the limit says (10,000,000 with no limit)
  dlt        this file run by the Python of a venv of its own (bench/vs-dlt/.venv, made
             and reused; dlt pinned in bench/requirements-dlt.txt, never a dependency of
             asana-etl), `dlt.sources.rest_api.rest_api_source` into dlt's `sqlalchemy`
             destination on a sqlite:/// URL

The dlt setup is what a good engineer would write with what dlt gives: one resource per
user (`GET /time_tracking_entries?user=...`, limit=100, the product's OPT_FIELDS, data
selector `data`), a bearer token, the cursor paginator on `next_page.offset` sent back as
`offset`, all into one table `time_tracking_entries`; the source `parallelized`, so that
the resources' requests run in dlt's extract thread pool (in dlt 1.31 the flag set on the
resources, or in resource_defaults, leaves them taking turns in the main thread, one
request at a time), at 8 workers (a sweep at 200 ms over 5, 6, 8, 10, 12 and 16 found none
faster: fewer send fewer requests a second, more draw 429s); dlt's own retries on 429
and 5xx, with 20 attempts rather than the default 5, so that a burst of 429s never fails
a run (the simulator's Retry-After is fractional, which dlt does not parse: it backs off
exponentially from 1 s instead); telemetry off (no network here). The write disposition
is `merge` on primary key `gid` (dlt's delete-insert through a staging dataset):
asana-etl upserts by gid, and a user who syncs the entries every night, keeping them as
Asana edits them, merges; `append` would duplicate every entry on the second night and
`replace` would not be a sync. ASANA_ETL_BENCH_DLT_DISPOSITION=append|replace measures
the others (on an empty database, `append` cost the same CPU as `merge`).

The cases: zero latency with no rate limit, and --latency (200 ms) with --limit (150 per
6 s, Asana's 1,500 a minute scaled). Each case runs --repeat pairs, interleaved (asana-etl,
dlt, asana-etl, dlt, ...), after one untimed pair to warm the disk cache; the table gives
medians of each side's seconds and the median of the pairs' ratios (dlt's seconds over
asana-etl's: above 1, asana-etl is faster); the same for CPU seconds (user + system of all
of a side's processes: steadier than wall time on a shared machine, and what a side would
cost on a busy one); each side's rows loaded (checked against the simulated entries;
asana-etl's tables checked exactly, as the listing scenarios do), requests and 429s as
the simulator counted them, and peak memory (PSS of a side's processes together).

Environment: ASANA_ETL_BENCH_DLT_ENTRIES (30000), ASANA_ETL_BENCH_DLT_USERS (30),
ASANA_ETL_BENCH_DLT_WORKERS (8), ASANA_ETL_BENCH_DLT_DISPOSITION (merge),
ASANA_ETL_BENCH_DLT_SCOPE (users; or workspace: one workspace scope each, dlt's one
resource then one listing), ASANA_ETL_BENCH_DLT_CASES (both; or zero, or latency),
ASANA_ETL_BENCH_DLT_VENV (where the dlt venv lives), ASANA_ETL_BENCH_DLT_WARMUP (1).

Run by the venv's Python with a JSON argument, this file is the dlt side itself; it prints
one JSON line (rows loaded, seconds per phase). Only the standard library at the top: the
dlt venv has no asana-etl.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REQUIREMENTS = HERE / "requirements-dlt.txt"
DLT_VERSION = "1.31.0"  # as pinned in requirements-dlt.txt
VENV = Path(os.environ.get("ASANA_ETL_BENCH_DLT_VENV", HERE / "vs-dlt" / ".venv"))
TABLE = "time_tracking_entries"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# --- the venv of dlt ------------------------------------------------------------------------

def dlt_python() -> Path:
    """The Python of the dlt venv, made (and dlt installed) the first time."""
    python = VENV / "bin" / "python"
    if python.exists() and _dlt_version(python) == DLT_VERSION:
        return python
    if not python.exists():
        print(f"making the dlt venv in {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"installing dlt {DLT_VERSION} (bench/requirements-dlt.txt) ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
                   check=True)
    version = _dlt_version(python)
    if version != DLT_VERSION:
        raise SystemExit(f"the dlt venv has dlt {version}, not {DLT_VERSION}")
    return python


def _dlt_version(python: Path) -> str | None:
    out = subprocess.run([str(python), "-c", "import dlt; print(dlt.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


# --- one run of each ----------------------------------------------------------------------

def run_dlt(python: Path, sim, scopes: list[tuple[str, str]], work: Path, workers: int,
            disposition: str) -> dict:
    """One dlt run against `sim` into a fresh SQLite file in `work`, as its own process."""
    from etl.asana.extract import OPT_FIELDS

    job = {"base_url": sim.info["base_url"], "token": sim.info["token"], "scopes": scopes,
           "opt_fields": OPT_FIELDS, "database": str(work / "dlt.db"), "work": str(work),
           "workers": workers, "disposition": disposition}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.monotonic()
    with open(work / "dlt.out", "w") as out, open(work / "dlt.err", "w") as err:
        process = subprocess.Popen([str(python), str(Path(__file__)), json.dumps(job)],
                                   stdout=out, stderr=err, env=env, cwd=work)
        sampler = _bench().TreePss(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        sampler.stop()
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (work / "dlt.err").read_text().splitlines()[-30:]
        raise SystemExit("the dlt run failed:\n" + "\n".join(tail))
    result = json.loads((work / "dlt.out").read_text().splitlines()[-1])
    result.update(seconds=seconds, cpu=usage.ru_utime + usage.ru_stime,
                  tree_pss_mb=sampler.peak_mb)
    return result


def run_product(bench, sim, scopes: list[tuple[str, str]], work: Path, rpm: int,
                data) -> dict:
    """One run of the real command line (bench.run_tool: the checkout
    ASANA_ETL_BENCH_CODE names if set), with the rows it loaded."""
    import sqlite3

    url = f"sqlite:///{work / 'bench.db'}"
    result = bench.run_tool(sim, url, rpm, work, bench.scopes_toml(scopes))
    with sqlite3.connect(work / "bench.db") as db:
        rows, gids = db.execute(f"SELECT COUNT(*), COUNT(DISTINCT gid) FROM {TABLE}").fetchone()
    result.update(rows=rows, gids=gids, exact=bench.exact(data, url))
    return result


def _with_stats(sim, result: dict) -> dict:
    stats = sim.stats()
    result["requests"] = stats["requests"]
    result["rate_limited"] = stats["by_status"].get("429", 0)
    return result


def _quiet(sim) -> None:
    """No traceback for a connection the client reset (dlt's process ends with its
    keep-alive connections open)."""
    server = sim.server._server
    handle_error = server.handle_error

    def quiet(request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            handle_error(request, client_address)

    server.handle_error = quiet


def _bench():
    """bench.py: the running __main__ when started as `python bench/bench.py vs-dlt`."""
    main = sys.modules.get("__main__")
    if main is not None and hasattr(main, "Served") and hasattr(main, "run_tool"):
        return main
    sys.path.insert(0, str(HERE))
    import bench

    return bench


def scenario(args) -> None:
    bench = _bench()
    python = dlt_python()
    entries = _env_int("ASANA_ETL_BENCH_DLT_ENTRIES", 30_000)
    users = _env_int("ASANA_ETL_BENCH_DLT_USERS", 30)
    workers = _env_int("ASANA_ETL_BENCH_DLT_WORKERS", 8)
    disposition = os.environ.get("ASANA_ETL_BENCH_DLT_DISPOSITION", "merge")
    scope_kind = os.environ.get("ASANA_ETL_BENCH_DLT_SCOPE", "users")
    which = os.environ.get("ASANA_ETL_BENCH_DLT_CASES", "both")
    warmup = os.environ.get("ASANA_ETL_BENCH_DLT_WARMUP", "1") != "0"

    data = bench.two_years(entries, users)
    if scope_kind == "workspace":
        scopes = [("workspace", data.workspace_gid)]
    else:
        scopes = [("user", u) for u in data.users]
    count, window = (float(x) for x in args.limit.split("/"))
    cases = [("0 ms, no limit", 0.0, "1000000/1", 10_000_000),
             (f"{args.latency * 1000:.0f} ms, {args.limit}", args.latency, args.limit,
              int(count / window * 60))]
    if which == "zero":
        cases = cases[:1]
    elif which == "latency":
        cases = cases[1:]

    sizes = sorted(sum(e.user_gid == u for e in data.entries.values()) for u in data.users)
    print(f"\nvs-dlt: {len(data.entries):,} entries over two years, {len(data.users)} users "
          f"({sizes[0]:,} to {sizes[-1]:,} entries each), "
          f"{'one workspace scope' if scope_kind == 'workspace' else 'one scope a user'}, "
          f"into a fresh SQLite file each run; {args.repeat} pairs a case, interleaved")
    print(f"dlt {DLT_VERSION} (rest_api_source -> sqlalchemy/sqlite, {disposition} on gid, "
          f"{len(scopes)} parallelized resource(s), {workers} extract workers) in {VENV}")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)

    table = []
    for n, (name, latency, limit, rpm) in enumerate(cases):
        sim = bench.Served(data, latency, limit)
        _quiet(sim)
        try:
            pairs: list[tuple[dict, dict]] = []
            rounds = args.repeat + (1 if warmup and n == 0 else 0)
            for i in range(rounds):
                pair = []
                for side in ("asana-etl", "dlt"):
                    with tempfile.TemporaryDirectory() as tmp:
                        sim.reset()
                        if side == "asana-etl":
                            r = run_product(bench, sim, scopes, Path(tmp), rpm, data)
                        else:
                            r = run_dlt(python, sim, scopes, Path(tmp), workers, disposition)
                        pair.append(_with_stats(sim, r))
                tool, dl = pair
                warm = warmup and n == 0 and i == 0
                print(f"  {name:16} {'warm-up' if warm else f'pair {len(pairs) + 1}':8} "
                      f"asana-etl {tool['seconds']:6.2f} s (CPU {tool['cpu']:.2f}; "
                      f"{tool['requests']} requests, {tool['rate_limited']} 429)  "
                      f"dlt {dl['seconds']:6.2f} s (CPU {dl['cpu']:.2f}; {dl['requests']} "
                      f"requests, {dl['rate_limited']} 429; extract {dl['extract']:.2f} "
                      f"normalize {dl['normalize']:.2f} load {dl['load']:.2f})  "
                      f"ratio {dl['seconds'] / tool['seconds']:.2f}", flush=True)
                if not warm:
                    pairs.append((tool, dl))
        finally:
            sim.close()
        table.append((name, pairs))

    expected = len(data.entries)
    print(f"\n{'latency':16} {'asana-etl s':>11} {'dlt s':>7} {'dlt/asana-etl':>13} "
          f"{'CPU s a-e':>9} {'CPU s dlt':>9} {'CPU ratio':>9} {'rows a-e':>8} "
          f"{'rows dlt':>8} {'req a-e':>7} {'req dlt':>7} {'429 dlt':>7} {'PSS a-e':>7} "
          f"{'PSS dlt':>7}")
    for name, pairs in table:
        tools, dlts = [p[0] for p in pairs], [p[1] for p in pairs]

        def med(results: list[dict], key: str) -> float:
            return statistics.median(r[key] for r in results)

        def rows(results: list[dict]) -> str:
            counts = {r["rows"] for r in results}
            return f"{counts.pop():,}" if len(counts) == 1 else "varies"

        ok = (all(t["rows"] == t["gids"] == expected and t["exact"] for t in tools)
              and all(d["rows"] == d["gids"] == expected for d in dlts))
        ratio = statistics.median(d["seconds"] / t["seconds"] for t, d in pairs)
        cpu_ratio = statistics.median(d["cpu"] / t["cpu"] for t, d in pairs)
        print(f"{name:16} {med(tools, 'seconds'):11.2f} {med(dlts, 'seconds'):7.2f} "
              f"{ratio:12.2f}x {med(tools, 'cpu'):9.2f} {med(dlts, 'cpu'):9.2f} "
              f"{cpu_ratio:8.2f}x {rows(tools):>8} {rows(dlts):>8} "
              f"{med(tools, 'requests'):7.0f} {med(dlts, 'requests'):7.0f} "
              f"{med(dlts, 'rate_limited'):7.0f} {med(tools, 'tree_pss_mb'):7.0f} "
              f"{med(dlts, 'tree_pss_mb'):7.0f}{'' if ok else '  ROWS WRONG'}")
    print(f"(rows: of {expected:,} entries, asana-etl's checked exactly; seconds: whole "
          "processes, medians; ratios: medians of the pairs'; CPU: user + system of each "
          "side's processes, asana-etl's run and fetcher together; PSS MB: peak memory of "
          "each side's processes together, sampled every 20 ms)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


# --- the dlt side: run by the dlt venv's Python -----------------------------------------------

def dlt_main(job: dict) -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("RUNTIME__REQUEST_MAX_ATTEMPTS", "20")
    os.environ["EXTRACT__WORKERS"] = str(job["workers"])
    started = time.monotonic()
    import dlt
    from dlt.sources.rest_api import RESTAPIConfig, rest_api_source

    imported = time.monotonic()

    def params(kind: str, gid: str) -> dict:
        if kind == "workspace":  # Asana asks a date filter with workspace
            return {"workspace": gid, "entered_on_start_date": "1900-01-01"}
        return {kind: gid}

    config: RESTAPIConfig = {
        "client": {
            "base_url": job["base_url"] + "/",
            "auth": {"type": "bearer", "token": job["token"]},
            "paginator": {"type": "cursor", "cursor_path": "next_page.offset",
                          "cursor_param": "offset"},
        },
        "resource_defaults": {
            "primary_key": "gid",
            "write_disposition": job["disposition"],
            "table_name": TABLE,
            "endpoint": {"data_selector": "data",
                         "params": {"limit": 100, "opt_fields": job["opt_fields"]}},
        },
        "resources": [{"name": f"entries_{kind}_{gid}",
                       "endpoint": {"path": "time_tracking_entries",
                                    "params": params(kind, gid)}}
                      for kind, gid in job["scopes"]],
    }
    pipeline = dlt.pipeline(
        pipeline_name="asana_entries",
        destination=dlt.destinations.sqlalchemy(credentials=f"sqlite:///{job['database']}"),
        dataset_name="asana",
        pipelines_dir=str(Path(job["work"]) / "pipelines"),
    )
    # pipeline.run() is these three in turn; called one by one to time them
    t0 = time.monotonic()
    # parallelized on the source: set in resource_defaults (or on each resource) it leaves
    # dlt 1.31's REST resources round-robin in the main thread, one request at a time
    pipeline.extract(rest_api_source(config, name="asana", parallelized=True))
    t1 = time.monotonic()
    pipeline.normalize()
    t2 = time.monotonic()
    info = pipeline.load()
    t3 = time.monotonic()
    info.raise_on_failed_jobs()
    with pipeline.sql_client() as client:
        rows, gids = client.execute_sql(
            f"SELECT COUNT(*), COUNT(DISTINCT gid) FROM {client.make_qualified_table_name(TABLE)}"
        )[0]
    print(json.dumps({"rows": rows, "gids": gids, "imports": imported - started,
                      "extract": t1 - t0, "normalize": t2 - t1, "load": t3 - t2}), flush=True)


if __name__ == "__main__":
    dlt_main(json.loads(sys.argv[1]))
