"""`asset3d gc`: clean up after runs that died (SIGKILL, a lost machine).

    asset3d gc [--dry-run] [--grace-hours H] [--dest DEST ...] [--catalogue-url URL] [--config FILE] [--json]

* closes catalogue runs still ``running`` whose process is gone (this host, pid no longer alive), and their
  leases with them; runs of other hosts are left to ``asset3d runs reconcile``;
* removes the objects of asset folders (``{dest}/{sku}/{conversion_key}/``) that have no manifest and no
  catalogue asset and are older than the grace period (default 24 h) and than every run still running;
* removes the folders of temporary Prefect servers whose command was killed (`asset3d.cli.tempserver`).

Safe while a batch runs (`asset3d.pipeline.gc` says why). ``--dry-run`` reports what it would do and changes
nothing. Exit 0 when done, 1 when refused or the catalogue cannot be reached, 2 for a catalogue error.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asset3d.cli import preflight
from asset3d.cli._catalogue import guarded, json_option

if TYPE_CHECKING:
    from storage.catalogue import Catalogue


def register(sub: argparse._SubParsersAction) -> None:
    from asset3d.pipeline.gc import GRACE_HOURS

    p = sub.add_parser(
        "gc",
        help="close runs whose process is gone; remove staged files no manifest and no catalogue row name",
        description=(
            "Clean up after killed runs: close catalogue runs still 'running' whose process is gone (this host), "
            "and remove the objects of asset folders in the destination(s) that have no manifest and no catalogue "
            f"asset and are older than the grace period (default {GRACE_HOURS:g} h). Safe while a batch runs: "
            "folders written since a running run started are kept. --dry-run changes nothing."
        ),
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p.add_argument(
        "--grace-hours", type=_hours, default=GRACE_HOURS, metavar="H",
        help=f"keep folders younger than this (default {GRACE_HOURS:g})",
    )  # fmt: skip
    p.add_argument(
        "--dest", action="append", default=None, metavar="DEST",
        help="destination to sweep (repeatable; default: the dest setting)",
    )  # fmt: skip
    p.add_argument("--catalogue-url", default=None, help="catalogue database URL (default: $ASSET3D_CATALOGUE_URL, else SQLite)")
    p.add_argument("--config", type=Path, default=None, help="YAML/TOML settings file (default: $ASSET3D_CONFIG)")
    json_option(p)
    p.set_defaults(func=run)


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0 hours")
    return value


def run(args: argparse.Namespace) -> int:
    from asset3d.pipeline.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config, catalogue_url=args.catalogue_url)
    except SettingsError as err:
        raise preflight.Refused(str(err)) from None
    args.dests = args.dest or [settings.dest]
    for dest in args.dests:
        preflight.store(dest, role="--dest" if args.dest else "dest", must_exist=False)
    args.catalogue_url = settings.resolved_catalogue_url()
    return guarded(_collect)(args)


def _collect(args: argparse.Namespace, cat: Catalogue) -> int:
    from asset3d.cli.tempserver import orphaned_homes
    from asset3d.pipeline.gc import collect

    report = collect(cat, args.dests, grace_hours=args.grace_hours, dry_run=args.dry_run)
    homes = orphaned_homes()
    if not args.dry_run:
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = report.as_dict()
    out["server_folders_removed"] = [str(h) for h in homes]
    if args.json:
        import json

        print(json.dumps(out, indent=2))
        return 0
    would = "would " if args.dry_run else ""
    for v in report.closed:
        print(f"run {v.run.id}: {would}close as failed ({v.because})")
    for v in report.runs:
        if not v.dead:
            print(f"run {v.run.id}: left running ({v.because})")
    for v in report.removed:
        f = v.folder
        print(f"{f.uri}/: {would}remove {len(f.objects)} objects, {_size(f.bytes)} ({v.because})")
    kept: dict[str, int] = {}
    for v in report.folders:
        if not v.orphan:
            why = v.because.split(" (")[0]
            kept[why] = kept.get(why, 0) + 1
    if kept:
        print(f"kept {sum(kept.values())} asset folders: " + ", ".join(f"{n} {why}" for why, n in sorted(kept.items())))
    for home in homes:
        print(f"{home}: {would}remove (the folder of a temporary Prefect server whose command is gone)")
    verb = "would close" if args.dry_run else "closed"
    print(
        f"gc{' (dry run: nothing changed)' if args.dry_run else ''}: {len(report.closed)} runs {verb}, "
        f"{len(report.removed)} orphaned folders {'would be ' if args.dry_run else ''}removed "
        f"({report.objects_removed} objects, {_size(report.bytes_removed)}) in {report.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
