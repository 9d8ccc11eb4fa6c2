"""`asset3d emit-batch`: tell the Prefect server a photo batch arrived (starts the convert-batch deployment)."""

from __future__ import annotations

import argparse
import sys

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emit-batch",
        help="emit asset3d.batch.arrived for PREFIX: the convert-batch deployment's trigger (S3 notifications, cron)",
        description=(
            "Send the event asset3d.batch.arrived with payload {prefix: PREFIX} to the Prefect server at "
            "PREFECT_API_URL. The convert-batch deployment's trigger turns it into a flow run with source=PREFIX. "
            "Use it from an S3 notification handler or a cron hook (Prefect's open-source server has no webhooks). "
            "Exit 1 when no server is configured or reachable."
        ),
    )
    p.add_argument("prefix", metavar="PREFIX", help="the batch: s3://bucket/prefix/ or a folder")
    p.add_argument("--photos", type=int, default=None, help="how many photos the batch holds (informative)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    from flows.triggers import EVENT, emit_batch

    try:
        event_id = emit_batch(args.prefix, photos=args.photos)
    except Exception as err:  # no server configured, refused connection
        print(f"asset3d emit-batch: {err}", file=sys.stderr)
        return 1
    print(f"{EVENT} {args.prefix} (event {event_id})")
    return 0
