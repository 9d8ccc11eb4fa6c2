"""`asset3d deploy`: work pools and the gpu limit from prefect.yaml, then `prefect deploy --all`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asset3d.cli import preflight


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="create the cpu/gpu work pools and the gpu concurrency limit, then `prefect deploy --all`",
        description=(
            "On the Prefect server at PREFECT_API_URL: create the process work pools and the tag concurrency "
            "limit listed under `definitions` in prefect.yaml (existing ones are kept), then run "
            "`prefect deploy --all` from the repository root: deployments nightly-catalogue (cron 0 2 * * *) "
            "and convert-batch (event trigger asset3d.batch.arrived)."
        ),
    )
    p.add_argument("--prefect-file", type=Path, default=None, help="the prefect.yaml (default: the repository's)")
    p.add_argument(
        "--timezone", default=os.environ.get("ASSET3D_TIMEZONE") or "UTC",
        help="time zone of the nightly schedule, an IANA name (default $ASSET3D_TIMEZONE, else UTC)",
    )  # fmt: skip
    p.add_argument("--gpu-slots", type=int, default=None, help="reconstructions at once over all workers (the gpu limit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preflight.prefect_api_url()  # before anything talks to a server: never a throwaway temporary one
    from flows.deploy import PREFECT_YAML, deploy_all, ensure_infrastructure

    path = (args.prefect_file or PREFECT_YAML).resolve()
    try:
        made = ensure_infrastructure(path, gpu_slots=args.gpu_slots)
    except Exception as err:  # no server, bad file
        print(f"asset3d deploy: {err}", file=sys.stderr)
        return 1
    for name, what in made["work_pools"].items():
        print(f"work pool {name}: {what}")
    for tag, limit in made["concurrency_limits"].items():
        print(f"concurrency limit {tag}: {limit}")
    proc = deploy_all(path, timezone=args.timezone)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return 0 if proc.returncode == 0 else 1
