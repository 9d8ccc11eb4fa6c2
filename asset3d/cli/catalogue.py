"""`asset3d catalogue`: look at the asset catalogue (tables for people, `--json` for scripts).

    asset3d catalogue list [--status S] [--sku X] [--metric 'faces<=50000'] [--limit N] [--json]
    asset3d catalogue show ASSET_ID [--json]
    asset3d catalogue stats [--json]
    asset3d catalogue failures [--since ISO] [--limit N] [--json]

``list`` is the review queue: ``needs_review`` first, then oldest first. ``--json`` prints an array of
objects for ``list`` and ``failures``, one object for ``show`` and ``stats``. Unknown ids exit 2.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asset3d.cli._catalogue import (
    guarded,
    json_option,
    print_json,
    print_table,
    url_options,
)

if TYPE_CHECKING:
    from storage.catalogue import Catalogue, MetricFilter

STATUSES = "pending, auto_approved, needs_review, approved, rejected, failed, superseded"


def register(sub: argparse._SubParsersAction) -> None:
    common = url_options()
    p = sub.add_parser(
        "catalogue",
        help="list, show and summarise catalogue assets; list recent failures",
        description="Query the SQL asset catalogue: review queue, one asset in full, statistics, failures.",
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    verbs = p.add_subparsers(dest="catalogue_command", metavar="ACTION", title="actions")

    ls = verbs.add_parser("list", parents=[common], help="the review queue: needs_review first, oldest first")
    ls.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help=f"only this status (repeatable; default: all but superseded): {STATUSES}",
    )
    ls.add_argument("--sku", help="only this product")
    ls.add_argument(
        "--metric",
        action="append",
        default=[],
        type=_metric_filter,
        metavar="NAME<OP>VALUE",
        help="metric threshold, e.g. 'faces<=50000' (repeatable; OP one of < <= > >= ==)",
    )
    ls.add_argument("--limit", type=_positive, default=50, help="at most N assets (default 50)")
    json_option(ls)
    ls.set_defaults(func=guarded(_list))

    show = verbs.add_parser("show", parents=[common], help="one asset with photo, run, metrics and reviews")
    show.add_argument("asset_id", type=int, metavar="ASSET_ID")
    json_option(show)
    show.set_defaults(func=guarded(_show))

    stats = verbs.add_parser("stats", parents=[common], help="counts by status and metric distributions")
    json_option(stats)
    stats.set_defaults(func=guarded(_stats))

    fails = verbs.add_parser("failures", parents=[common], help="failures, newest first")
    fails.add_argument("--since", type=_since, help="only at or after this ISO time (UTC if no offset)")
    fails.add_argument("--limit", type=_positive, default=100, help="at most N failures (default 100)")
    json_option(fails)
    fails.set_defaults(func=guarded(_failures))


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return n


def _metric_filter(text: str) -> MetricFilter:
    from storage.catalogue import InvalidInput, MetricFilter

    try:
        return MetricFilter.parse(text)
    except InvalidInput as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time, e.g. 2024-05-01T08:00:00+00:00") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _list(args: argparse.Namespace, cat: Catalogue) -> int:
    assets = cat.review_queue(statuses=args.status, sku=args.sku, metric_filters=args.metric, limit=args.limit)
    if args.json:
        print_json(assets)
        return 0
    print_table(
        ["id", "status", "sku", "ver", "preset", "created (UTC)", "faces", "glb"],
        [(a.id, a.status, a.sku, a.version, a.preset, a.created_at, a.faces, a.glb_uri) for a in assets],
        empty="no assets match",
    )
    return 0


def _show(args: argparse.Namespace, cat: Catalogue) -> int:
    d = cat.asset_detail(args.asset_id)
    if args.json:
        print_json(d)
        return 0
    a, photo, run = d.asset, d.photo, d.run
    fields: list[tuple[str, object]] = [
        ("asset", f"{a.id} (version {a.version} of photo {photo.id})"),
        ("status", a.status.value + (f" (superseded by {a.superseded_by_id})" if a.superseded_by_id else "")),
        ("sku", f"{d.product.sku}" + (f" - {d.product.title}" if d.product.title else "")),
        ("photo", f"{photo.uri} ({photo.width}x{photo.height}, {photo.size_bytes} bytes, sha256 {photo.sha256[:12]})"),
        ("preset", a.preset),
        ("glb", a.glb_uri),
        ("mesh", f"{_n(a.size_bytes)} bytes, {_n(a.faces)} faces, {_n(a.vertices)} vertices"),
        ("previews", ", ".join(a.preview_uris) or None),
        ("created", a.created_at.isoformat(timespec="seconds")),
        ("published", a.published_at.isoformat(timespec="seconds") if a.published_at else None),
        ("conversion", a.conversion_key[:16]),
    ]
    if run is not None:
        fields.append(("run", f"{run.id} {run.status.value} model {run.model_id} weights {run.weights_sha256[:12]} "
                              f"pipeline {run.pipeline_version} host {run.host}"))  # fmt: skip
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        print(f"{k.ljust(width)}  {v if v is not None else '-'}")
    print("\nmetrics")
    print_table(["name", "value", "unit"], [(m.name, m.value, m.unit) for m in d.metrics.values()])
    print("\nreviews")
    print_table(
        ["when (UTC)", "reviewer", "decision", "from", "to", "comment"],
        [(e.created_at, e.reviewer, e.decision, e.from_status, e.to_status, e.comment) for e in d.reviews],
    )
    return 0


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
    rows = cat.failures_since(args.since, limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ["id", "when (UTC)", "stage", "reason", "sku", "photo", "message"],
        [(f.id, f.created_at, f.stage, f.reason, f.sku, f.photo_uri, f.message.splitlines()[0][:80] if f.message else "")
         for f in rows],
        empty="no failures",
    )  # fmt: skip
    return 0
