"""`asset3d db`: create, upgrade, downgrade and check the catalogue schema (Alembic).

    asset3d db upgrade [REV]     upgrade to REV (default: head)
    asset3d db downgrade REV     downgrade to REV (`base` drops every table)
    asset3d db current           the revision the database is at
    asset3d db check             exit 0 only when the database is at head and models match migrations

The URL is ``--url``, else ``ASSET3D_CATALOGUE_URL``, else ``sqlite:///.asset3d/catalogue.db``.
Exit codes: 0 ok, 1 database out of date / unreachable, 2 refused input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SAOperationalError

import migrations
from asset3d.commands._catalogue import resolved_url, url_options
from storage.catalogue import CatalogueError
from storage.catalogue.settings import redact_secrets, redact_url


def register(sub: argparse._SubParsersAction) -> None:
    common = url_options()
    p = sub.add_parser(
        "db",
        help="manage the catalogue schema: upgrade, downgrade, current, check",
        description="Manage the catalogue database schema with Alembic migrations.",
    )
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
    verbs = p.add_subparsers(dest="db_command", metavar="ACTION", title="actions")

    up = verbs.add_parser("upgrade", parents=[common], help="upgrade the schema (default: to head)")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    up.set_defaults(func=_upgrade)

    down = verbs.add_parser("downgrade", parents=[common], help="downgrade the schema to REV (`base`: empty)")
    down.add_argument("revision", help="target revision, e.g. base or -1")
    down.set_defaults(func=_downgrade)

    cur = verbs.add_parser("current", parents=[common], help="print the revision the database is at")
    cur.set_defaults(func=_current)

    chk = verbs.add_parser(
        "check", parents=[common], help="exit 0 only when the database is at head and models match migrations"
    )
    chk.set_defaults(func=_check)


def _guard(action: str, args: argparse.Namespace, fn: Callable[[], int]) -> int:
    url = resolved_url(args)
    try:
        return fn()
    except migrations.MigrationsOutOfDate as err:
        print(f"catalogue {redact_url(url)}: {err}", file=sys.stderr)
        return 1
    except CatalogueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SAOperationalError as err:
        first = str(err.orig).strip().splitlines()[0] if err.orig is not None else type(err).__name__
        print(f"error: {action}: catalogue {redact_url(url)} unavailable: {redact_secrets(first)}", file=sys.stderr)
        return 1
    except DBAPIError as err:
        print(f"error: {action}: {redact_secrets(str(err.orig)).splitlines()[0]}", file=sys.stderr)
        return 1
    except Exception as err:  # alembic CommandError (unknown revision, ...)
        print(f"error: {action}: {redact_secrets(str(err))}", file=sys.stderr)
        return 2


def _upgrade(args: argparse.Namespace) -> int:
    def go() -> int:
        url = resolved_url(args)
        migrations.upgrade(url, args.revision)
        print(f"catalogue {redact_url(url)}: at {', '.join(migrations.current(url)) or 'base'}")
        return 0

    return _guard("upgrade", args, go)


def _downgrade(args: argparse.Namespace) -> int:
    def go() -> int:
        url = resolved_url(args)
        migrations.downgrade(url, args.revision)
        print(f"catalogue {redact_url(url)}: at {', '.join(migrations.current(url)) or 'base'}")
        return 0

    return _guard("downgrade", args, go)


def _current(args: argparse.Namespace) -> int:
    def go() -> int:
        revs = migrations.current(resolved_url(args))
        heads = migrations.heads()
        state = "head" if sorted(revs) == sorted(heads) else f"head is {', '.join(heads)}"
        print(f"{', '.join(revs) or 'base (no schema)'} ({state})")
        return 0

    return _guard("current", args, go)


def _check(args: argparse.Namespace) -> int:
    def go() -> int:
        url = resolved_url(args)
        migrations.check(url)
        print(f"catalogue {redact_url(url)}: at head {', '.join(migrations.heads())}; models match migrations")
        return 0

    return _guard("check", args, go)
