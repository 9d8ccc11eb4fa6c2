"""Helpers shared by the catalogue commands (`db`, `catalogue`, `review`): URL option, errors, tables.

SQLAlchemy, Alembic and the catalogue are imported when a command runs, not when `asset3d --help` builds
its parsers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.catalogue import Catalogue

Handler = Callable[[argparse.Namespace], int]
CatalogueHandler = Callable[[argparse.Namespace, "Catalogue"], int]


def url_options() -> argparse.ArgumentParser:
    """A parent parser adding ``--url`` (default ``ASSET3D_CATALOGUE_URL``, else the local SQLite file)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        default=None,
        help="catalogue database URL (default: $ASSET3D_CATALOGUE_URL, else sqlite:///.asset3d/catalogue.db)",
    )
    return parent


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def resolved_url(args: argparse.Namespace) -> str:
    from storage.catalogue import catalogue_url

    return catalogue_url(getattr(args, "url", None))


def guarded(fn: CatalogueHandler) -> Handler:
    """Run ``fn(args, catalogue)`` on the catalogue ``--url`` names, closing it afterwards, and turn
    catalogue errors into one clear line on stderr and an exit code.

    Unknown ids, refused transitions and bad input exit 2; an unreachable database exits 1.
    """

    def run(args: argparse.Namespace) -> int:
        from storage.catalogue import Catalogue, CatalogueError, CatalogueUnavailable, redact_secrets

        cat: Catalogue | None = None
        try:
            cat = Catalogue(resolved_url(args))
            return fn(args, cat)
        except CatalogueUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 1 if err.reason == "unreachable" else 2
        except CatalogueError as err:
            print(f"error: {err} [{err.reason}]", file=sys.stderr)
            return 2
        except Exception as err:  # a driver error we did not map: never print a password
            print(f"error: {type(err).__name__}: {redact_secrets(str(err)).splitlines()[0]}", file=sys.stderr)
            return 1
        finally:
            if cat is not None:
                cat.close()

    run.__doc__ = fn.__doc__
    return run


def print_json(value: Any) -> None:
    from storage.catalogue import to_jsonable

    print(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "(none)") -> None:
    """Print rows as aligned columns under a header line; numbers right-aligned."""
    if not rows:
        print(empty)
        return
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(list(headers)))
    print(line(["-" * w for w in widths]))
    for r in cells:
        print(line(r))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    if hasattr(value, "value"):  # enums
        return str(value.value)
    return str(value)
