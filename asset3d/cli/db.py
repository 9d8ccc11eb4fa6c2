"""`asset3d db`: create, upgrade, downgrade and check the catalogue schema (Alembic).

    asset3d db upgrade [REV]     upgrade to REV (default: head)
    asset3d db downgrade REV     downgrade to REV (`base` drops every table)
    asset3d db current           the revision the database is at
    asset3d db check             exit 0 only when the database is at head and models match migrations

The URL is ``--catalogue-url`` (``--url`` is a hidden alias), else ``ASSET3D_CATALOGUE_URL``, else
``sqlite:///.asset3d/catalogue.db``; each command says on stderr which catalogue it used (password masked).
Only ``upgrade`` creates a SQLite file; ``current``, ``check`` and ``downgrade`` refuse one that does not exist.
Exit codes: 0 ok, 1 database out of date, missing or unreachable, 2 refused input (bad URL, unknown revision).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from asset3d.cli._catalogue import announce, require_database, resolved_url, url_options


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
    up.set_defaults(func=_action("upgrade", _upgrade, creates=True))

    down = verbs.add_parser("downgrade", parents=[common], help="downgrade the schema to REV (`base`: empty)")
    down.add_argument("revision", help="target revision, e.g. base or -1")
    down.set_defaults(func=_action("downgrade", _downgrade))

    cur = verbs.add_parser("current", parents=[common], help="print the revision the database is at")
    cur.set_defaults(func=_action("current", _current))

    chk = verbs.add_parser(
        "check", parents=[common], help="exit 0 only when the database is at head and models match migrations"
    )
    chk.set_defaults(func=_action("check", _check))


def _action(
    name: str, body: Callable[[argparse.Namespace, str], str], *, creates: bool = False
) -> Callable[[argparse.Namespace], int]:
    """Run ``body(args, url)``, print the line it returns, and map failures to messages and exit codes.

    Unless ``creates``, a SQLite file that does not exist is refused (exit 1) instead of created empty.
    """

    def run(args: argparse.Namespace) -> int:
        from alembic.util import CommandError
        from sqlalchemy.exc import DBAPIError

        import migrations
        from storage.catalogue import CatalogueError, redact_secrets, redact_url

        url = resolved_url(args)
        shown = redact_url(url)
        try:
            announce(url)
            if not creates:
                require_database(url)
            print(body(args, url))
            return 0
        except migrations.MigrationsOutOfDate as err:
            print(f"catalogue {shown}: {err}", file=sys.stderr)
            return 1
        except CatalogueError as err:  # malformed URL, or no database file
            print(f"error: {err}", file=sys.stderr)
            return 1 if err.reason == "no_database" else 2
        except DBAPIError as err:
            first = (str(err.orig).strip() or type(err.orig).__name__).splitlines()[0]
            print(f"error: {name}: catalogue {shown} unavailable: {redact_secrets(first)}", file=sys.stderr)
            return 1
        except CommandError as err:  # unknown revision, ...
            print(f"error: {name}: {redact_secrets(str(err))}", file=sys.stderr)
            return 2

    return run


def _at(url: str) -> str:
    import migrations
    from storage.catalogue import redact_url

    return f"catalogue {redact_url(url)}: at {', '.join(migrations.current(url)) or 'base'}"


def _upgrade(args: argparse.Namespace, url: str) -> str:
    import migrations

    migrations.upgrade(url, args.revision)
    return _at(url)


def _downgrade(args: argparse.Namespace, url: str) -> str:
    import migrations

    migrations.downgrade(url, args.revision)
    return _at(url)


def _current(args: argparse.Namespace, url: str) -> str:
    import migrations

    revs, heads = migrations.current(url), migrations.heads()
    state = "head" if sorted(revs) == sorted(heads) else f"head is {', '.join(heads)}"
    return f"{', '.join(revs) or 'base (no schema)'} ({state})"


def _check(args: argparse.Namespace, url: str) -> str:
    import migrations
    from storage.catalogue import redact_url

    migrations.check(url)
    return f"catalogue {redact_url(url)}: at head {', '.join(migrations.heads())}; models match migrations"
