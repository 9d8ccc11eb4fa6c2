"""`asset3d deploy`: work pools, the gpu limit and the crash automation from prefect.yaml, then `prefect deploy --all`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="create the work pools, the gpu concurrency limit and the crash automation, then `prefect deploy --all`",
        description=(
            "On the Prefect server at PREFECT_API_URL: create the work pools (process, docker or kubernetes, as "
            "declared) and the global concurrency limit listed under `definitions` in prefect.yaml, and the "
            "automation that marks a flow run Crashed when its heartbeats stop (existing ones are kept or updated), "
            "then run `prefect deploy --all` with the nightly's time zone, the batch trigger's window and the "
            "allowed sources (ASSET3D_ALLOWED_SOURCES, when set) written in: deployments "
            "nightly-catalogue (cron 0 2 * * *) and convert-batch (event asset3d.batch.arrived)."
        ),
    )
    p.add_argument("--prefect-file", type=Path, default=None, help="the prefect.yaml (default: the repository's)")
    p.add_argument(
        "--timezone", default=os.environ.get("ASSET3D_TIMEZONE") or None,
        help="time zone of the nightly schedule, an IANA name (default $ASSET3D_TIMEZONE, else the file's: UTC)",
    )  # fmt: skip
    p.add_argument("--gpu-slots", type=int, default=None, help="devices converting at once over all workers (the gpu limit)")
    p.add_argument(
        "--trigger-window", type=int, default=None, metavar="S",
        help="events of one batch prefix within S seconds start one run, S seconds later (default: the file's, 60)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    if args.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise preflight.Refused(f"--timezone {args.timezone!r}: not an IANA time zone (e.g. Europe/Madrid, UTC)") from None
    if args.gpu_slots is not None and args.gpu_slots < 1:
        raise preflight.Refused(f"--gpu-slots {args.gpu_slots}: at least 1")
    if args.trigger_window is not None and args.trigger_window < 0:
        raise preflight.Refused(f"--trigger-window {args.trigger_window}: 0 or more seconds")
    from asset3d.pipeline.settings import load_settings
    from asset3d.pipeline.sources import locate

    allowed = [locate(uri) for uri in load_settings().allowed_sources]
    from flows.deploy import PREFECT_YAML, deploy_all, ensure_infrastructure

    path = (args.prefect_file or PREFECT_YAML).resolve()
    try:
        made = ensure_infrastructure(path, gpu_slots=args.gpu_slots)
    except Exception as err:  # no server, bad file, a pool of another type
        print(f"asset3d deploy: {err}", file=sys.stderr)
        return 1
    for name, what in made["work_pools"].items():
        print(f"work pool {name}: {what}")
    for name, limit in made["concurrency_limits"].items():
        print(f"global concurrency limit {name}: {limit}")
    for name, what in made["automations"].items():
        print(f"automation {name!r}: {what}")
    for what in made["removed"]:
        print(f"removed {what}")
    if allowed:
        print("batch events accepted for: " + ", ".join(a.uri for a in allowed))
    proc = deploy_all(path, timezone=args.timezone, window_s=args.trigger_window, allowed=allowed)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return 0 if proc.returncode == 0 else 1
