"""`asset3d review`: a reviewer's decision on one asset, validated and recorded as a review event.

    asset3d review approve ASSET_ID --reviewer NAME [--comment TEXT]
    asset3d review reject  ASSET_ID --reviewer NAME [--comment TEXT]
    asset3d review request ASSET_ID --reviewer NAME [--comment TEXT]    (send back to needs_review)

Overturning an earlier human decision (rejected -> approved, approved -> rejected) needs ``--comment``;
failed, superseded and still-pending assets cannot be reviewed. Refusals and unknown ids exit 2.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from asset3d.cli._catalogue import guarded, json_option, print_json, url_options

if TYPE_CHECKING:
    from storage.catalogue import Catalogue

# verb -> (storage.catalogue.ReviewDecision value, help)
_VERBS = {
    "approve": ("approve", "approve an asset"),
    "reject": ("reject", "reject an asset"),
    "request": ("request_review", "send an asset back to needs_review"),
}


def register(sub: argparse._SubParsersAction) -> None:
    common = url_options()
    p = sub.add_parser(
        "review",
        help="approve or reject catalogue assets (validated transitions, recorded review events)",
        description="Record a reviewer's decision on an asset; the transition rules are in docs/catalogue.md.",
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    verbs = p.add_subparsers(dest="review_command", metavar="DECISION", title="decisions")
    for verb, (decision, help_text) in _VERBS.items():
        v = verbs.add_parser(verb, parents=[common], help=help_text)
        v.add_argument("asset_id", type=int, metavar="ASSET_ID")
        v.add_argument("--reviewer", required=True, metavar="NAME", help="who decides (recorded with the event)")
        v.add_argument("--comment", metavar="TEXT", help="why; required when overturning an earlier review")
        json_option(v)
        v.set_defaults(func=guarded(_review), decision=decision)


def _review(args: argparse.Namespace, cat: Catalogue) -> int:
    event = cat.review(
        args.asset_id, args.decision, reviewer=args.reviewer, comment=args.comment
    )
    if args.json:
        print_json(event)
    else:
        print(f"asset {event.asset_id}: {event.from_status.value} -> {event.to_status.value} "
              f"({event.decision.value} by {event.reviewer}, review event {event.id})")  # fmt: skip
    return 0
