"""`asset3d run-batch`: the `convert_batch` flow, locally (ephemeral Prefect) or on a server deployment."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from asset3d.cli import preflight
from asset3d.cli.convert import (
    add_settings_options,
    print_report,
    say_catalogue,
    settings_from,
    worker_environment,
)
from asset3d.pipeline.vocabulary import PhotoStatus

FAILED = tuple(s.value for s in PhotoStatus if s.is_failure)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run-batch",
        help="convert a batch of photos with the convert_batch flow (locally, or on a Prefect deployment)",
        description=(
            "Run the convert_batch flow on SOURCE (s3://bucket/prefix, file:///abs or a folder) and publish to "
            "DEST. Without --deployment it runs here (a temporary Prefect server unless PREFECT_API_URL is set); "
            "with it, a run of the deployment is created on the server and awaited. Prints the summary. "
            "Exit 0 when all photos converted or were skipped, 2 when some failed, 1 on a fatal error."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="prefix or folder of photos (SKU = each photo's parent folder)")
    p.add_argument("--dest", default=None, help="where assets are published (default: the dest setting)")
    p.add_argument("--sku-pattern", default=None, help="regex with a group 'sku', searched in each photo URI")
    p.add_argument("--sidecar", default=None, help="CSV (key,sku) or JSON {key: sku} naming the SKUs")
    p.add_argument("--fan-out", type=int, default=None, help="photos per sub-batch run on the deployment (0: none)")
    p.add_argument(
        "--deployment", nargs="?", const="convert-batch/convert-batch", default=None, metavar="NAME",
        help="submit to this server deployment (default name convert-batch/convert-batch) instead of running here",
    )  # fmt: skip
    p.add_argument("--no-wait", action="store_true", help="with --deployment: print the flow run id and return")
    add_settings_options(p)
    p.set_defaults(func=run)


#: What a run of a deployment may be given: what the batch is. Machine settings are the workers', conversion
#: parameters the server's (the asset3d-conversion Variable), secrets never travel as parameters.
BATCH_PARAMETERS = ("dest", "preset", "fan_out", "sku_pattern", "sidecar", "catalogue_url")
LOCAL_ONLY = ("model", "batch_size", "device", "config")


def run(args: argparse.Namespace) -> int:
    from asset3d.pipeline.summary import BatchSummary

    settings = settings_from(args, dest=args.dest, sku_pattern=args.sku_pattern, sidecar=args.sidecar, fan_out=args.fan_out)
    if args.deployment:
        preflight.prefect_api_url()
        return _submit(args)
    preflight.store(args.source, role="source", must_exist=True)
    preflight.store(settings.dest, role="dest", must_exist=False)
    say_catalogue(settings)
    from asset3d.cli.tempserver import ensure_prefect_server

    ensure_prefect_server("asset3d run-batch")  # before Prefect loads: it reads PREFECT_API_URL once
    from flows.convert import convert_batch

    with worker_environment(settings):
        report = convert_batch(args.source)
    summary = BatchSummary.from_dict(report)
    print_report(summary, as_json=args.json)
    return summary.exit_code()


def _submit(args: argparse.Namespace) -> int:
    from flows.submit import submit_batch
    from storage.catalogue.settings import parse_url

    if args.catalogue_url and parse_url(args.catalogue_url).password:
        raise preflight.Refused(
            "--catalogue-url carries a password: a deployment run's parameters are stored in Prefect's database; "
            "give the workers ASSET3D_CATALOGUE_URL or a Prefect Secret block (ASSET3D_CATALOGUE_SECRET)"
        )
    ignored = [f"--{n.replace('_', '-')}" for n in LOCAL_ONLY if getattr(args, n, None) is not None]
    if ignored:
        print(f"asset3d run-batch: {', '.join(ignored)} apply to local runs; the deployment's workers use their own settings",
              file=sys.stderr)  # fmt: skip
    parameters: dict[str, Any] = {"source": args.source}
    parameters.update({n: getattr(args, n) for n in BATCH_PARAMETERS if getattr(args, n, None) is not None})
    try:
        out = submit_batch(args.deployment, parameters, wait=not args.no_wait)
    except Exception as err:  # no server, no such deployment
        print(f"asset3d run-batch: cannot run deployment {args.deployment}: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"flow run {out['flow_run_id']}: {out['state']}")
        if out["summary"]:
            print(out["summary"])
    if args.no_wait:
        return 0
    if out["state"] != "Completed":
        return 1
    failed = [row for row in out["photos"] if row.get("status") in FAILED]
    for row in failed:
        print(f"{row['status']:<12} {row.get('sku')}/{row.get('photo')}: {row.get('glb_uri_or_reason')}", file=sys.stderr)
    return 2 if failed else 0
