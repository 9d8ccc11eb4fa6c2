"""`asset3d watch`: poll a bucket and emit asset3d.batch.arrived for each prefix with new photos (the fallback
where S3 notifications through SQS, `asset3d listen`, are not set up)."""

from __future__ import annotations

import argparse
import sys

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="poll SOURCE every S seconds; emit asset3d.batch.arrived for each prefix with new or changed photos",
        description=(
            "List SOURCE every --interval seconds and, for each batch prefix (the first --depth folders under "
            "SOURCE) whose photos are new or whose ETags changed since the last poll, emit the "
            "asset3d.batch.arrived event to the Prefect server at PREFECT_API_URL. What was seen is kept on that "
            "server (one Prefect Variable per batch prefix, asset3d-watch-*), so a restart, or a watch on another "
            "machine, does not emit again. With ASSET3D_ALLOWED_SOURCES set, SOURCE must lie under one of them."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="s3://bucket/prefix or a folder")
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between polls (default 60)")
    p.add_argument("--depth", type=int, default=1, help="folders under SOURCE that name a batch (default 1)")
    p.add_argument("--once", action="store_true", help="poll once and exit")
    p.add_argument("--baseline", action="store_true", help="record what is there now without emitting")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    if args.interval <= 0 or args.depth < 0:
        raise preflight.Refused("--interval must be > 0 and --depth >= 0")
    preflight.store(args.source, role="source", must_exist=True)
    from asset3d.pipeline.settings import load_settings
    from asset3d.pipeline.sources import SourceRefused, check_source, locate

    allowed = [locate(uri) for uri in load_settings().allowed_sources]
    if allowed:
        try:
            check_source(args.source, [a.uri for a in allowed])
        except SourceRefused as err:
            raise preflight.Refused(str(err)) from None
    from flows.triggers import watch

    try:
        sent = watch(args.source, interval=args.interval, depth=args.depth, once=args.once, baseline=args.baseline, allowed=allowed)
    except Exception as err:  # no server, unreadable source
        print(f"asset3d watch: {err}", file=sys.stderr)
        return 1
    print(f"{sent} events sent", file=sys.stderr)
    return 0
