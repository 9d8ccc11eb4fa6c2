"""`asset3d nightly`: the `nightly_catalogue` flow, here and now (the deployment runs it on a schedule)."""

from __future__ import annotations

import argparse

from asset3d.cli import preflight
from asset3d.cli.convert import (
    add_settings_options,
    print_report,
    say_catalogue,
    settings_from,
    worker_environment,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "nightly",
        help="run the nightly catalogue conversion once: new or changed photos of the whole source",
        description=(
            "Scan the whole SOURCE (default: the source setting) and convert the photos that are new, changed or "
            "not yet converted with the current model and parameters; skip the rest without downloading them. "
            "Runs the nightly_catalogue flow here (a temporary Prefect server unless PREFECT_API_URL is set). "
            "Exit 0 when nothing failed, 2 when some photos failed, 1 on a fatal error."
        ),
    )
    p.add_argument("--source", default=None, help="the photos bucket (default: $ASSET3D_SOURCE / the config file)")
    p.add_argument("--dest", default=None, help="where assets are published (default: the dest setting)")
    add_settings_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asset3d.pipeline.summary import BatchSummary

    settings = settings_from(args, source=args.source, dest=args.dest)
    preflight.store(settings.source, role="source", must_exist=True)
    preflight.store(settings.dest, role="dest", must_exist=False)
    say_catalogue(settings)
    from asset3d.cli.tempserver import ensure_prefect_server

    ensure_prefect_server("asset3d nightly")  # before Prefect loads: it reads PREFECT_API_URL once
    from flows.nightly import nightly_catalogue

    with worker_environment(settings):
        report = nightly_catalogue()
    summary = BatchSummary.from_dict(report)
    print_report(summary, as_json=args.json)
    return summary.exit_code()
