"""`asset3d serve`: the review web app (queue, asset pages with a 3D viewer, decisions, JSON API).

    asset3d serve --add-reviewer ana                  # prints ana's token once; only its hash is stored
    asset3d serve [--host 127.0.0.1] [--port 8000] [--catalogue-url URL] [--bucket URI]... [--anonymous-read]

Binds 127.0.0.1 unless told otherwise. The catalogue must exist (a SQLite path that does not is an error,
never created); files are served from the ``--bucket`` roots only. Details: docs/reviewing.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from asset3d.cli._catalogue import add_url_option, announce, require_database

if TYPE_CHECKING:
    from asset3d.web.settings import ServeSettings

#: The settings, as `asset3d serve --help` lists them (kept in step with asset3d.web.settings.ServeSettings
#: by a test; the help must not import pydantic).
SETTINGS_HELP = """\
settings (environment; the flags above override them):
  ASSET3D_SERVE_HOST             bind address (default 127.0.0.1: this machine only)
  ASSET3D_SERVE_PORT             TCP port (default 8000)
  ASSET3D_SERVE_CATALOGUE_URL    catalogue URL (default $ASSET3D_CATALOGUE_URL, else sqlite:///.asset3d/catalogue.db)
  ASSET3D_SERVE_BUCKETS          comma-separated bucket roots files may be served from
                                 (default: the pipeline's ASSET3D_SOURCE and ASSET3D_DEST)
  ASSET3D_SERVE_REVIEWERS_FILE   reviewer names and token hashes (default .asset3d/reviewers.json)
  ASSET3D_SERVE_ANONYMOUS_READ   true: pages, API reads and files without signing in (default false)
  ASSET3D_SERVE_SECRET_KEY       signs session and CSRF cookies (default: random per process)
  ASSET3D_SERVE_COOKIE_SECURE    true: cookies over HTTPS only (behind a TLS proxy)
  ASSET3D_SERVE_SESSION_HOURS    how long a sign-in lasts (default 12)
  ASSET3D_SERVE_PAGE_SIZE        assets per queue page (default 25)
  ASSET3D_SERVE_NODE_MODULES     the npm packages folder with @google/model-viewer and three
                                 (default: node_modules of the checkout, made by `npm ci`)

access: reads need a signed-in reviewer (or ASSET3D_SERVE_ANONYMOUS_READ=true); reviews always do. Reviewers
sign in on the login page with their name and token, or send `Authorization: Bearer TOKEN` (or basic auth:
name and token) to the JSON API, e.g.
  curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{"decision": "approved", "comment": "looks right"}' http://127.0.0.1:8000/api/assets/12/review
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the review web app: queue, 3D viewer beside the photo, approve/reject, JSON API",
        description=(
            "Serve the review app: the queue at /, an asset page with a 3D viewer, its previews, photo and intake "
            "mask, the gate's reasons and metrics; approve (publishes) or reject (unpublishes) with a comment; "
            "a catalogue overview; a JSON API under /api/ (OpenAPI at /openapi.json)."
        ),
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    add_url_option(p)
    p.add_argument(
        "--bucket", action="append", default=None, metavar="URI",
        help="a bucket root files may be served from (repeatable: the assets' and the photos' buckets)",
    )  # fmt: skip
    p.add_argument("--reviewers-file", type=Path, default=None, metavar="PATH", help="reviewer token hashes")
    p.add_argument(
        "--anonymous-read", action="store_true", default=None, help="allow reading without signing in (reviews still need a reviewer)"
    )
    tokens = p.add_argument_group("reviewers (then exit)")
    tokens.add_argument("--add-reviewer", metavar="NAME", help="create or replace NAME's token, print it once, store its hash")
    tokens.add_argument("--remove-reviewer", metavar="NAME", help="remove NAME (their token and sessions stop working)")
    tokens.add_argument("--list-reviewers", action="store_true", help="list reviewer names")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asset3d.web.reviewers import ReviewerError
    from asset3d.web.settings import ServeSettingsError, load_serve_settings

    try:
        settings = load_serve_settings(
            host=args.host, port=args.port, catalogue_url=args.catalogue_url,
            buckets=tuple(args.bucket) if args.bucket else None, reviewers_file=args.reviewers_file,
            anonymous_read=args.anonymous_read,
        )  # fmt: skip
        if args.add_reviewer or args.remove_reviewer or args.list_reviewers:
            return _reviewers(args, settings.reviewers_file)
    except (ServeSettingsError, ReviewerError) as err:
        print(f"asset3d serve: {err}", file=sys.stderr)
        return 2
    return _serve(settings)


def _reviewers(args: argparse.Namespace, path: Path) -> int:
    from asset3d.web.reviewers import Reviewers, add_reviewer, remove_reviewer

    if args.add_reviewer:
        token = add_reviewer(path, args.add_reviewer)
        print(f"reviewer {args.add_reviewer}: token stored hashed in {path}; this is the only time it is shown:", file=sys.stderr)
        print(token)
    if args.remove_reviewer:
        removed = remove_reviewer(path, args.remove_reviewer)
        print(f"reviewer {args.remove_reviewer}: {'removed' if removed else 'not found'} ({path})", file=sys.stderr)
        if not removed:
            return 2
    if args.list_reviewers:
        for name in Reviewers(path).names():
            print(name)
    return 0


def _serve(settings: ServeSettings) -> int:
    import uvicorn

    from asset3d.pipeline.settings import SettingsError
    from asset3d.web.app import create_app
    from asset3d.web.reviewers import ReviewerError
    from storage import StorageError
    from storage.catalogue import CatalogueError, catalogue_url

    url = catalogue_url(settings.catalogue_url)
    try:
        announce(url)
        require_database(url)
        app = create_app(settings)
        state = app.state.review
        reviewers = state.reviewers.names()
    except (CatalogueError, StorageError, ReviewerError, SettingsError) as err:
        print(f"asset3d serve: {err}", file=sys.stderr)
        return 2
    print(f"buckets: {', '.join(state.buckets.uris)}", file=sys.stderr)
    print(f"reviewers: {settings.reviewers_file} ({len(reviewers)} reviewer(s))"
          + ("; anonymous reads allowed" if settings.anonymous_read else ""), file=sys.stderr)  # fmt: skip
    if not state.viewer_available:
        print(f"warning: no 3D viewer in {settings.npm_folder} (run `npm ci`): asset pages show a download link", file=sys.stderr)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {settings.host}: the app is reachable from other machines", file=sys.stderr)
    print(f"review app: http://{settings.host}:{settings.port}/", file=sys.stderr)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0
