"""`asset3d runs`: the catalogue's conversion runs, and closing those Prefect has ended.

    asset3d runs list [--running] [--json]
    asset3d runs reconcile [--json]     close rows still `running` whose flow run is over on the Prefect server

A run row is closed by its batch when it ends; a machine lost with its flow run leaves it `running` until
Prefect marks the flow run crashed (the heartbeat automation `asset3d deploy` creates). `reconcile` then
closes it; every batch also does so before it starts.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from asset3d.cli import preflight
from asset3d.cli._catalogue import guarded, json_option, print_json, print_table, url_options

if TYPE_CHECKING:
    from storage.catalogue import Catalogue


def register(sub: argparse._SubParsersAction) -> None:
    common = url_options()
    p = sub.add_parser(
        "runs",
        help="list conversion runs; close those whose Prefect flow run has ended (reconcile)",
        description="The catalogue's conversion runs: list them, and close the rows Prefect has ended.",
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    verbs = p.add_subparsers(dest="runs_command", metavar="ACTION", title="actions")
    ls = verbs.add_parser("list", parents=[common], help="runs, newest first")
    ls.add_argument("--running", action="store_true", help="only runs still marked running")
    json_option(ls)
    ls.set_defaults(func=guarded(_list))
    rec = verbs.add_parser(
        "reconcile", parents=[common],
        help="close rows still running whose flow run Prefect has ended (needs PREFECT_API_URL)",
    )  # fmt: skip
    json_option(rec)
    rec.set_defaults(func=_reconcile)


def _list(args: argparse.Namespace, cat: Catalogue) -> int:
    runs = cat.runs_in_progress() if args.running else cat.recent_runs()
    if args.json:
        print_json(runs)
        return 0
    print_table(
        ["run", "status", "started (UTC)", "finished (UTC)", "flow run", "host", "pid", "model"],
        [(r.id, r.status, r.started_at, r.finished_at, r.flow_run_id, r.host, r.pid, r.model_id) for r in runs],
        empty="no runs",
    )
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before the catalogue: refused in one line without a server
    return guarded(_reconcile_with)(args)


def _reconcile_with(args: argparse.Namespace, cat: Catalogue) -> int:
    from flows.runs import reconcile

    closed = reconcile(cat)
    if args.json:
        print_json([{"run_id": c.run_id, "flow_run_id": c.flow_run_id, "status": c.status.value, "because": c.because} for c in closed])
    else:
        for c in closed:
            print(f"run {c.run_id} closed as {c.status.value}: {c.because} (flow run {c.flow_run_id})")
        print(f"{len(closed)} runs closed", file=sys.stderr)
    return 0
