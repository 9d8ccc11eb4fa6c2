"""`asset3d review`: a reviewer's decision on assets, acting on the catalogue and the bucket.

    asset3d review approve ASSET_ID... --reviewer NAME [--comment TEXT]
    asset3d review reject  --sku X --reviewer NAME --comment TEXT            (every needs_review asset of X)
    asset3d review approve --status needs_review --metric 'input_view.silhouette_iou>=0.8' --dry-run
    asset3d review request ASSET_ID --reviewer NAME [--comment TEXT]         (send back to needs_review)

Assets are named by their integer asset ids, or chosen by a filter (``--status``, default
``needs_review``; ``--sku``, ``--run``, ``--metric``). Each asset is decided on its own
(`asset3d.pipeline.review.decide`): approving an unpublished asset publishes it (files checked by
SHA-256, ``manifest.json`` written last), rejecting a published one takes its manifest away first. One
failure does not stop the others; a line per asset, then a summary counting each outcome. ``--dry-run``
lists what would change and changes nothing.

Overturning an earlier human decision (rejected -> approved, approved -> rejected) needs ``--comment``;
failed, superseded and still-pending assets cannot be reviewed. Exit 0 when every asset was decided, 2
when any was refused, unknown or failed to publish, 1 when the catalogue is unreachable.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asset3d.cli._catalogue import (
    check_metric_names,
    guarded,
    json_option,
    metric_filter,
    print_json,
    url_options,
)

if TYPE_CHECKING:
    from storage.catalogue import Catalogue

# verb -> (storage.catalogue.ReviewDecision value, help)
_VERBS = {
    "approve": ("approve", "approve assets (an unpublished asset is published)"),
    "reject": ("reject", "reject assets (a published asset is unpublished, manifest first)"),
    "request": ("request_review", "send assets back to needs_review"),
}

#: outcomes, in the order the summary lists them
OUTCOMES = ("applied", "would_apply", "refused", "not_found", "failed")


@dataclass(frozen=True)
class Result:
    """What happened to one asset."""

    asset_id: int
    outcome: str  # one of OUTCOMES
    from_status: str | None = None
    to_status: str | None = None
    event_id: int | None = None
    published: bool | None = None
    manifest_uri: str | None = None
    withdrawn: tuple[int, ...] = ()
    reason: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id, "outcome": self.outcome, "from_status": self.from_status,
            "to_status": self.to_status, "event_id": self.event_id, "published": self.published,
            "manifest_uri": self.manifest_uri, "withdrawn": list(self.withdrawn), "reason": self.reason,
            "message": self.message,
        }  # fmt: skip

    def line(self, decision: str, reviewer: str | None) -> str:
        if self.outcome == "applied":
            text = f"asset {self.asset_id}: {self.from_status} -> {self.to_status} ({decision} by {reviewer}, review event {self.event_id})"
            if self.manifest_uri and self.published:
                text += f", published {self.manifest_uri}"
            elif self.published is False and self.from_status in ("approved", "auto_approved"):
                text += ", unpublished"
            if self.withdrawn:
                text += f"; withdrew superseded asset(s) {', '.join(map(str, self.withdrawn))}"
            return text
        if self.outcome == "would_apply":
            return f"asset {self.asset_id}: would go {self.from_status} -> {self.to_status}"
        return f"asset {self.asset_id}: {self.outcome.replace('_', ' ')} [{self.reason}]: {self.message}"


def register(sub: argparse._SubParsersAction) -> None:
    common = url_options()
    p = sub.add_parser(
        "review",
        help="approve or reject catalogue assets, one or many (publishes on approval, unpublishes on rejection)",
        description=(
            "Record a reviewer's decision on assets and act on the bucket: approving publishes (manifest.json "
            "written last), rejecting a published asset takes its manifest away first. Name assets by asset id, "
            "or choose them with a filter. Transition rules: docs/catalogue.md; reviewing: docs/reviewing.md."
        ),
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    verbs = p.add_subparsers(dest="review_command", metavar="DECISION", title="decisions")
    for verb, (decision, help_text) in _VERBS.items():
        v = verbs.add_parser(verb, parents=[common], help=help_text, description=help_text + ".")
        v.add_argument("asset_ids", type=int, nargs="*", metavar="ASSET_ID", help="catalogue asset ids (integers)")
        chooser = v.add_argument_group("or choose assets by filter (default status: needs_review)")
        chooser.add_argument("--status", action="append", metavar="STATUS", help="only this status (repeatable)")
        chooser.add_argument("--sku", help="only this product")
        chooser.add_argument("--run", type=int, metavar="RUN_ID", help="only assets of this conversion run")
        chooser.add_argument(
            "--metric",
            action="append",
            default=[],
            type=metric_filter,
            metavar="NAME<OP>VALUE",
            help="metric threshold, names as `catalogue show --json` prints them (e.g. 'asset.faces<=50000')",
        )
        v.add_argument("--reviewer", metavar="NAME", help="who decides (recorded with each event; required unless --dry-run)")
        v.add_argument("--comment", metavar="TEXT", help="why; required when overturning an earlier review")
        v.add_argument("--dry-run", action="store_true", help="list what would change; change nothing")
        json_option(v)
        v.set_defaults(func=guarded(_review), decision=decision, verb=verb)


def _has_filter(args: argparse.Namespace) -> bool:
    return bool(args.status or args.sku or args.run is not None or args.metric)


def _selected(args: argparse.Namespace, cat: Catalogue) -> list[int]:
    from storage.catalogue import InvalidInput

    if args.asset_ids and _has_filter(args):
        raise InvalidInput("give asset ids or a filter (--status, --sku, --run, --metric), not both")
    if args.asset_ids:
        return list(dict.fromkeys(args.asset_ids))
    if not _has_filter(args):
        raise InvalidInput("name the assets: asset ids, or a filter (--status, --sku, --run, --metric)")
    check_metric_names(cat, args.metric)
    assets, _ = cat.find_assets(
        statuses=args.status or ["needs_review"], sku=args.sku, run_id=args.run, metric_filters=args.metric,
        newest_first=False, limit=None,
    )  # fmt: skip
    return [a.id for a in assets]


def _review(args: argparse.Namespace, cat: Catalogue) -> int:
    from storage.catalogue import CatalogueUnavailable, InvalidInput

    if not args.dry_run and not (args.reviewer or "").strip():
        raise InvalidInput("--reviewer NAME is required (who decides is recorded with each event)")
    ids = _selected(args, cat)
    decide_one = _preview if args.dry_run else _decide
    results: list[Result] = []
    outage: CatalogueUnavailable | None = None
    for asset_id in ids:
        try:
            results.append(decide_one(cat, asset_id, args))
        except CatalogueUnavailable as err:  # not this asset's fault: the rest would fail the same way
            outage = err
            break
    counts = Counter(r.outcome for r in results)
    if args.json:
        print_json({
            "decision": args.decision, "dry_run": args.dry_run, "reviewer": args.reviewer,
            "results": [r.as_dict() for r in results], "counts": {k: counts.get(k, 0) for k in OUTCOMES},
            "stopped": str(outage) if outage else None,
        })  # fmt: skip
    else:
        for r in results:
            ok = r.outcome in ("applied", "would_apply")
            print(r.line(args.decision, args.reviewer), file=sys.stdout if ok else sys.stderr)
        print(_summary(args.verb, args.dry_run, len(ids), counts, results))
    if outage is not None:
        print(f"error: {outage} (stopped after {len(results)} of {len(ids)} assets)", file=sys.stderr)
        return 1
    return 0 if all(r.outcome in ("applied", "would_apply") for r in results) else 2


def _summary(verb: str, dry_run: bool, n: int, counts: Counter[str], results: list[Result]) -> str:
    parts = []
    for outcome in OUTCOMES:
        if counts.get(outcome):
            label = outcome.replace("_", " ")
            if outcome == "applied":
                published = sum(1 for r in results if r.outcome == "applied" and r.published)
                label += f" ({published} published)" if verb == "approve" else ""
            parts.append(f"{counts[outcome]} {label}")
    head = f"{verb}{' (dry run)' if dry_run else ''}: {n} asset{'s' if n != 1 else ''}"
    return head + (": " + ", ".join(parts) if parts else ": nothing matched")


def _preview(cat: Catalogue, asset_id: int, args: argparse.Namespace) -> Result:
    """What `decide` would do, without doing it."""
    from storage.catalogue import CatalogueError, CatalogueUnavailable, NotFound

    try:
        target = cat.review_target(asset_id, args.decision, comment=args.comment)
        current = cat.get_asset(asset_id).status
    except CatalogueUnavailable:
        raise
    except NotFound as err:
        return Result(asset_id, "not_found", reason=err.reason, message=str(err))
    except CatalogueError as err:
        return Result(asset_id, "refused", reason=err.reason, message=str(err))
    return Result(asset_id, "would_apply", from_status=current.value, to_status=target.value)


def _decide(cat: Catalogue, asset_id: int, args: argparse.Namespace) -> Result:
    """Apply the decision to one asset; every error but an unreachable catalogue is that asset's outcome."""
    from asset3d.pipeline.errors import describe
    from asset3d.pipeline.review import decide
    from storage.catalogue import (
        CatalogueUnavailable,
        InvalidInput,
        NotFound,
        TransitionRefused,
        redact_secrets,
    )

    try:
        out = decide(cat, asset_id, args.decision, reviewer=args.reviewer.strip(), comment=args.comment)
    except CatalogueUnavailable:
        raise
    except NotFound as err:
        return Result(asset_id, "not_found", reason=err.reason, message=str(err))
    except (TransitionRefused, InvalidInput) as err:
        return Result(asset_id, "refused", reason=err.reason, message=str(err))
    except Exception as err:  # publishing (StageError, StorageError), the catalogue, or a bug: this asset only
        reason, message = describe(err)
        return Result(asset_id, "failed", reason=reason, message=redact_secrets(message) + " (status unchanged)")
    return Result(
        asset_id, "applied", from_status=out.from_status.value, to_status=out.to_status.value, event_id=out.event_id,
        published=out.published, manifest_uri=out.manifest_uri, withdrawn=tuple(out.withdrawn),
    )  # fmt: skip
