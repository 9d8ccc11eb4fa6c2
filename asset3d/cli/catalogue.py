"""`asset3d catalogue`: look at the asset catalogue (text for people, `--json` for scripts). Read-only.

    asset3d catalogue list [--status S] [--sku X] [--run N] [--metric 'asset.faces<=50000'] [--limit N] [--json]
    asset3d catalogue show ASSET_ID [--json]
    asset3d catalogue stats [--json]
    asset3d catalogue failures [--since ISO] [--limit N] [--json]

``list`` is the review queue: ``needs_review`` first, then oldest first, with the gate's first reason for
held assets. ``show`` prints an asset with the gate's decision and every reason (rule, threshold, value),
the intake flags and the previews; ``--json`` prints the same data (`asset3d.web.present.asset_json`).
Metric names are the flattened ones ``show --json`` prints (``asset.faces``); an unknown name is an
error listing the known ones. The ASSET_ID is the catalogue's integer asset id (not the 64-hex
conversion key of the asset's folder). Unknown ids exit 2; no command creates a database file.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asset3d.cli._catalogue import (
    check_metric_names,
    guarded,
    json_option,
    metric_filter,
    positive,
    print_json,
    print_table,
    url_options,
)

if TYPE_CHECKING:
    from storage.catalogue import AssetDetail, Catalogue

STATUSES = "pending, auto_approved, needs_review, approved, rejected, failed, superseded"


def register(sub: argparse._SubParsersAction) -> None:
    common = url_options()
    p = sub.add_parser(
        "catalogue",
        help="list, show and summarise catalogue assets; list recent failures (read-only)",
        description=(
            "Query the SQL asset catalogue: review queue, one asset in full, statistics, failures. Read-only: "
            "a catalogue that does not exist is an error, never created."
        ),
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    verbs = p.add_subparsers(dest="catalogue_command", metavar="ACTION", title="actions")

    ls = verbs.add_parser(
        "list", parents=[common], help="the review queue: needs_review first, oldest first, with the gate's first reason"
    )
    ls.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help=f"only this status (repeatable; default: all but superseded): {STATUSES}",
    )
    ls.add_argument("--sku", help="only this product")
    ls.add_argument("--run", type=int, metavar="RUN_ID", help="only assets of this conversion run")
    ls.add_argument(
        "--metric",
        action="append",
        default=[],
        type=metric_filter,
        metavar="NAME<OP>VALUE",
        help="metric threshold on the names `catalogue show --json` prints, e.g. 'asset.faces<=50000' "
        "(repeatable; OP one of < <= > >= ==; an unknown name is an error listing the known ones)",
    )
    ls.add_argument("--limit", type=positive, default=50, help="at most N assets (default 50)")
    json_option(ls)
    ls.set_defaults(func=guarded(_list))

    show = verbs.add_parser(
        "show",
        parents=[common],
        help="one asset: the gate's decision and reasons, intake flags, previews, photo, run, metrics, reviews",
    )
    show.add_argument("asset_id", type=int, metavar="ASSET_ID", help="the catalogue's integer asset id")
    json_option(show)
    show.set_defaults(func=guarded(_show))

    stats = verbs.add_parser("stats", parents=[common], help="counts by status and metric distributions")
    json_option(stats)
    stats.set_defaults(func=guarded(_stats))

    fails = verbs.add_parser("failures", parents=[common], help="failures, newest first, with their whole messages")
    fails.add_argument("--since", type=_since, help="only at or after this ISO time (UTC if no offset)")
    fails.add_argument("--limit", type=positive, default=100, help="at most N failures (default 100)")
    json_option(fails)
    fails.set_defaults(func=guarded(_failures))


def _since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time, e.g. 2024-05-01T08:00:00+00:00") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _list(args: argparse.Namespace, cat: Catalogue) -> int:
    from asset3d.web.present import HELD, asset_summary_json, gate_view

    check_metric_names(cat, args.metric)
    assets, _ = cat.find_assets(
        statuses=args.status, sku=args.sku, run_id=args.run, metric_filters=args.metric, newest_first=False,
        limit=args.limit,
    )  # fmt: skip
    if args.json:
        print_json([asset_summary_json(a) for a in assets])
        return 0
    print_table(
        ["asset id", "status", "sku", "ver", "preset", "created (UTC)", "faces", "first reason"],
        [
            (a.id, a.status, a.sku, a.version, a.preset, a.created_at, a.faces,
             (gate_view(a.gate).first_reason or "(no reason recorded)") if a.status in HELD else None)
            for a in assets
        ],
        empty="no assets match",
    )  # fmt: skip
    return 0


def _show(args: argparse.Namespace, cat: Catalogue) -> int:
    from asset3d.web.present import asset_json

    d = cat.asset_detail(args.asset_id)
    if args.json:
        print_json(asset_json(d))
        return 0
    print_detail(d)
    return 0


def print_detail(d: AssetDetail) -> None:
    """An asset for people: fields, the gate's verdict, previews, metrics, reviews."""
    from asset3d.web.present import fmt_number, gate_view

    a, photo, run = d.asset, d.photo, d.run
    gate = gate_view(a.gate)
    fields: list[tuple[str, object]] = [
        ("asset id", f"{a.id} (version {a.version} of photo {photo.id})"),
        ("conversion key", a.conversion_key),
        ("status", a.status.value + (f" (superseded by asset {a.superseded_by_id})" if a.superseded_by_id else "")),
        ("sku", f"{d.product.sku}" + (f" - {d.product.title}" if d.product.title else "")),
        ("photo", f"{photo.uri} ({photo.width}x{photo.height}, {photo.size_bytes} bytes, sha256 {photo.sha256[:12]})"),
        ("preset", a.preset),
        ("glb", a.glb_uri),
        ("mesh", f"{_n(a.size_bytes)} bytes, {_n(a.faces)} faces, {_n(a.vertices)} vertices"),
        ("created", a.created_at.isoformat(timespec="seconds")),
        ("published", a.published_at.isoformat(timespec="seconds") if a.published_at else None),
    ]
    if run is not None:
        fields.append(("run", f"{run.id} {run.status.value}, model {run.model_id}, weights sha256 {run.weights_sha256}, "
                              f"pipeline {run.pipeline_version}, host {run.host}"))  # fmt: skip
    fields.append(("gate", gate.decision if gate.recorded else "(no verdict recorded for this asset)"))
    fields.append(("intake flags", ", ".join(gate.intake_flags) or ("none" if gate.recorded else None)))
    if gate.unscaled:
        fields.append(("size", "unscaled: no product dimensions, the model's own units are written as metres"))
    _print_fields(fields)
    if gate.reasons:
        print("\ngate reasons")
        for r in gate.reasons:
            facts = [f"rule {r.rule or '?'}"]
            if r.value is not None:
                facts.append(f"value {fmt_number(r.value)}")
            if r.threshold is not None:
                facts.append(f"threshold {fmt_number(r.threshold)}")
            print(_wrapped(f"- {r.message} [{', '.join(facts)}]", indent="  "))
    if gate.notes:
        print("\ngate notes")
        for note in gate.notes:
            print(_wrapped(f"- {note}", indent="  "))
    print("\npreviews")
    for uri in a.preview_uris:
        print(f"  {uri}")
    if not a.preview_uris:
        print("  (none)")
    print("\nmetrics")
    print_table(["name", "value", "unit"], [(m.name, m.value, m.unit) for m in sorted(d.metrics.values(), key=lambda m: m.name)])
    print("\nreviews")
    print_table(
        ["when (UTC)", "reviewer", "decision", "from", "to", "comment"],
        [(e.created_at, e.reviewer, e.decision, e.from_status, e.to_status, e.comment) for e in d.reviews],
    )


def _print_fields(fields: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        print(f"{k.ljust(width)}  {v if v is not None else '-'}")


def _wrapped(text: str, *, indent: str) -> str:
    columns = max(60, shutil.get_terminal_size((100, 24)).columns)
    return textwrap.fill(
        text, width=columns, initial_indent=indent, subsequent_indent=indent + "  ", break_long_words=False,
        break_on_hyphens=False,
    )  # fmt: skip


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _stats(args: argparse.Namespace, cat: Catalogue) -> int:
    counts = cat.counts_by_status()
    dists = cat.metric_distributions()
    if args.json:
        print_json({"counts": counts, "total": sum(counts.values()), "metrics": dists})
        return 0
    print_table(["status", "assets"], [(s, n) for s, n in counts.items()] + [("total", sum(counts.values()))])
    print("\nmetrics (assets not superseded)")
    print_table(
        ["metric", "count", "min", "median", "p95", "max"],
        [(name, x.count, x.min, x.median, x.p95, x.max) for name, x in dists.items()],
    )
    return 0


def _failures(args: argparse.Namespace, cat: Catalogue) -> int:
    from asset3d.web.present import failure_json

    rows = cat.failures_since(args.since, limit=args.limit)
    if args.json:
        print_json([failure_json(f) for f in rows])
        return 0
    if not rows:
        print("no failures")
        return 0
    for i, f in enumerate(rows):
        if i:
            print()
        where = " ".join(x for x in (f"asset {f.asset_id}" if f.asset_id else "", f"sku {f.sku}" if f.sku else "") if x)
        print(f"failure {f.id}  {f.created_at:%Y-%m-%d %H:%M} UTC  {f.stage}/{f.reason}" + (f"  {where}" if where else ""))
        if f.photo_uri:
            print(f"  photo {f.photo_uri}")
        for line in (f.message or "").splitlines() or [""]:
            print(_wrapped(line, indent="  "))
    return 0
