"""`asset3d watch`: poll a bucket and emit asset3d.batch.arrived for each prefix with new photos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="poll SOURCE every S seconds; emit asset3d.batch.arrived for each prefix with new or changed photos",
        description=(
            "List SOURCE every --interval seconds and, for each batch prefix (the first --depth folders under "
            "SOURCE) holding photos that are new or whose ETag changed since the last poll, emit the "
            "asset3d.batch.arrived event to the Prefect server at PREFECT_API_URL. The last listing is kept in a "
            "state file, so a restart does not emit again."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="s3://bucket/prefix or a folder")
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between polls (default 60)")
    p.add_argument("--depth", type=int, default=1, help="folders under SOURCE that name a batch (default 1)")
    p.add_argument("--state", type=Path, default=None, help="state file (default .asset3d/watch-<hash>.json)")
    p.add_argument("--once", action="store_true", help="poll once and exit")
    p.add_argument("--baseline", action="store_true", help="record what is there now without emitting")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    preflight.store(args.source, role="source", must_exist=True)
    from flows.triggers import watch

    if args.interval <= 0 or args.depth < 0:
        print("asset3d watch: --interval must be > 0 and --depth >= 0", file=sys.stderr)
        return 2
    try:
        sent = watch(
            args.source, interval=args.interval, depth=args.depth, state_file=args.state, once=args.once,
            baseline=args.baseline,
        )  # fmt: skip
    except Exception as err:  # no server, unreadable source
        print(f"asset3d watch: {err}", file=sys.stderr)
        return 1
    print(f"{sent} events sent", file=sys.stderr)
    return 0
