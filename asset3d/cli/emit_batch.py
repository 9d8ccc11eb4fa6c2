"""`asset3d emit-batch`: tell the Prefect server a photo batch arrived (starts the convert-batch deployment)."""

from __future__ import annotations

import argparse
import sys

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "emit-batch",
        help="emit asset3d.batch.arrived for PREFIX: the convert-batch deployment's trigger (cron hooks, handlers)",
        description=(
            "Send the event asset3d.batch.arrived for PREFIX (its resource: id asset3d.batch.<hash>, name the "
            "prefix) to the Prefect server at PREFECT_API_URL. The convert-batch deployment's trigger turns it "
            "into one flow run with source=PREFIX (events of the same prefix within the trigger's window start "
            "no other). With ASSET3D_ALLOWED_SOURCES set, a PREFIX outside them is refused here; the run's worker "
            "refuses it in any case. Exit 1 when refused or when no server is configured or reachable."
        ),
    )
    p.add_argument("prefix", metavar="PREFIX", help="the batch: s3://bucket/prefix/ or a folder")
    p.add_argument("--photos", type=int, default=None, help="how many photos the batch holds (informative)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    from asset3d.pipeline.settings import load_settings
    from asset3d.pipeline.sources import SourceRefused, locate

    try:
        allowed = [locate(uri) for uri in load_settings().allowed_sources]
        locate(args.prefix)
    except SourceRefused as err:
        raise preflight.Refused(str(err)) from None
    from flows.triggers import EVENT, emit_batch

    try:
        event_id = emit_batch(args.prefix, photos=args.photos, allowed=allowed)
    except SourceRefused as err:
        raise preflight.Refused(str(err)) from None
    except Exception as err:  # no server configured, refused connection
        print(f"asset3d emit-batch: {err}", file=sys.stderr)
        return 1
    print(f"{EVENT} {args.prefix} (event {event_id})")
    return 0
