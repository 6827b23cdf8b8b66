"""`python -m etl.simulator`: the simulated Asana on its own, until Ctrl-C."""

from __future__ import annotations

import argparse
import json

from etl.simulator.dataset import Dataset
from etl.simulator.server import AsanaSimulator


def main(argv: list[str] | None = None) -> None:
    """A simulated Asana time tracking API on 127.0.0.1, serving a generated dataset
    until killed (Ctrl-C). It prints one line of JSON first: the base URL, the token
    and the workspace, user, project and portfolio gids, for a config or a script, and
    the switches it runs with. Beyond the list it serves the single GET with every field,
    the workspace's time tracking categories, timesheet approval statuses and rates."""
    parser = argparse.ArgumentParser(prog="python -m etl.simulator", description=main.__doc__)
    parser.add_argument("--entries", type=int, default=1000,
                        help="time tracking entries to generate, by skewed users (a few log "
                             "most of the hours); default %(default)s")
    parser.add_argument("--users", type=int, default=12,
                        help="users who log time; default %(default)s")
    parser.add_argument("--projects", type=int, default=10,
                        help="projects the entries are attributable to; default %(default)s")
    parser.add_argument("--seed", type=int, default=1,
                        help="the random seed: the same seed, the same dataset; default "
                             "%(default)s")
    parser.add_argument("--port", type=int, default=0,
                        help="the port on 127.0.0.1 to listen on; default any free one")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds added to every answer, as a far-away server would; "
                             "default none")
    parser.add_argument("--rate-limit", default=None, metavar="REQUESTS/SECONDS",
                        help="answer 429 with Retry-After beyond this rate, e.g. 150/6 "
                             "(Asana's 1,500 a minute, scaled); default no limit")
    parser.add_argument("--no-addon", dest="addon", action="store_false",
                        help="a workspace without the Timesheets & Budgets add-on: no billable "
                             "status, description or categories on entries; categories answer "
                             "403, timesheets and rates 402")
    parser.add_argument("--list-extra-fields", choices=("ignore", "refuse", "return"),
                        default="ignore",
                        help="what the entries' listing does with opt_fields it does not "
                             "document (task, created_at, approval_status, billable_status, "
                             "description): leave them out, answer 400 naming opt_fields, or "
                             "return them; default %(default)s")
    parser.add_argument("--approval-case", choices=("upper", "lower"), default="upper",
                        help="the case of the timesheets' approval_status (lower: as the "
                             "endpoint first spoke); default %(default)s")
    args = parser.parse_args(argv)
    rate_limit = None
    if args.rate_limit:
        count, seconds = args.rate_limit.split("/")
        rate_limit = (int(count), float(seconds))
    data = Dataset.generate(args.seed, entries=args.entries, users=args.users,
                            projects=args.projects, tasks=max(60, args.projects * 6))
    from etl.asana.extract import OPT_FIELDS

    # serialise every entry now, as asana-etl asks for them: a benchmark then measures
    # the tool, not the simulator's first pass
    data.entries_json(list(data.entries), set(OPT_FIELDS.split(",")))
    server = AsanaSimulator(data, port=args.port, latency=args.latency, rate_limit=rate_limit)
    server.addon = args.addon
    server.list_extra_fields = args.list_extra_fields
    server.approval_case = args.approval_case
    print(json.dumps({
        "base_url": server.base_url, "token": server.token, "workspace": data.workspace_gid,
        "users": list(data.users), "projects": list(data.projects),
        "portfolios": list(data.portfolios), "entries": len(data.entries),
        "addon": server.addon, "list_extra_fields": server.list_extra_fields,
        "approval_case": server.approval_case,
    }), flush=True)
    try:
        server._server.serve_forever(0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
