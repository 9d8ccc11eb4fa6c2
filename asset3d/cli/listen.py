"""`asset3d listen`: S3 notifications from an SQS queue become one asset3d.batch.arrived event per batch."""

from __future__ import annotations

import argparse
import sys

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen",
        help="consume S3 ObjectCreated notifications from an SQS queue; emit asset3d.batch.arrived once per batch",
        description=(
            "Receive S3 ObjectCreated notifications (direct, or wrapped by SNS) from the SQS queue QUEUE_URL, group "
            "the photos by batch prefix (the allowed source they lie under, ASSET3D_ALLOWED_SOURCES, else "
            "ASSET3D_SOURCE, plus the first --depth folders below it) and emit one asset3d.batch.arrived event per "
            "batch to the Prefect server at PREFECT_API_URL once the queue is drained (at most --hold seconds "
            "later). A message is deleted only after the events of its batches were sent; photos outside the "
            "allowed sources are logged and dropped. Runs until interrupted (--once: until the queue is empty)."
        ),
    )
    p.add_argument("--queue", required=True, metavar="QUEUE_URL", help="the SQS queue URL the bucket notifies")
    p.add_argument("--depth", type=int, default=1, help="folders under the source that name a batch (default 1)")
    p.add_argument("--wait", type=int, default=10, metavar="S", help="long-poll seconds per receive, 1-20 (default 10)")
    p.add_argument("--hold", type=float, default=10.0, metavar="S", help="longest a notification waits for its batch's event")
    p.add_argument("--once", action="store_true", help="drain the queue once and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    if args.depth < 0 or not 1 <= args.wait <= 20 or args.hold <= 0:
        raise preflight.Refused("--depth must be >= 0, --wait 1-20 s and --hold > 0")
    if not args.queue.startswith(("https://", "http://")):
        raise preflight.Refused(f"--queue {args.queue!r}: an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")
    from asset3d.pipeline.settings import load_settings
    from asset3d.pipeline.sources import SourceRefused
    from flows.triggers import allowed_locations, listen

    try:
        allowed = allowed_locations(load_settings())
    except SourceRefused as err:
        raise preflight.Refused(f"ASSET3D_SOURCE: {err}") from None
    if not any(a.scheme == "s3" for a in allowed):
        raise preflight.Refused("no S3 source to listen for: set ASSET3D_ALLOWED_SOURCES (or ASSET3D_SOURCE) to s3://bucket/prefix")
    print(f"listening on {args.queue} for photos under {', '.join(a.uri for a in allowed)}", file=sys.stderr, flush=True)
    try:
        sent = listen(
            args.queue, allowed, depth=args.depth, wait_s=args.wait, hold_s=args.hold, once=args.once,
            log=lambda line: print(line, flush=True),
        )  # fmt: skip
    except Exception as err:  # no such queue, no credentials, no server
        from asset3d.pipeline.errors import describe

        print(f"asset3d listen: {describe(err)[1].splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"{sent} events sent", file=sys.stderr)
    return 0
