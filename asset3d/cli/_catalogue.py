"""Helpers shared by the catalogue commands (`db`, `catalogue`, `review`, `serve`): the catalogue option,
errors, tables.

Every command takes ``--catalogue-url`` (``--url`` is a hidden alias kept for old scripts), says on stderr
which catalogue it used (password masked), and never creates a database file unless it is meant to
(``asset3d db upgrade``): a SQLite path that does not exist is an error.

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
    from storage.catalogue import Catalogue, MetricFilter

Handler = Callable[[argparse.Namespace], int]
CatalogueHandler = Callable[[argparse.Namespace, "Catalogue"], int]

URL_HELP = "catalogue database URL (default: $ASSET3D_CATALOGUE_URL, else sqlite:///.asset3d/catalogue.db)"


def add_url_option(parser: argparse.ArgumentParser, *, help_text: str = URL_HELP) -> None:
    """Add ``--catalogue-url`` and its hidden alias ``--url`` (both set ``args.catalogue_url``)."""
    parser.add_argument("--catalogue-url", dest="catalogue_url", default=None, metavar="URL", help=help_text)
    parser.add_argument("--url", dest="catalogue_url", default=None, help=argparse.SUPPRESS)


def url_options() -> argparse.ArgumentParser:
    """A parent parser adding ``--catalogue-url`` (and the hidden alias ``--url``)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_url_option(parent)
    return parent


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def resolved_url(args: argparse.Namespace) -> str:
    from storage.catalogue import catalogue_url

    return catalogue_url(getattr(args, "catalogue_url", None))


def announce(url: str) -> None:
    """Say on stderr which catalogue a command uses (password masked)."""
    from storage.catalogue import redact_url

    print(f"catalogue: {redact_url(url)}", file=sys.stderr)


def require_database(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist (opening it would create an empty database).

    Raises
    ------
    storage.catalogue.CatalogueUnavailable
        ``reason="no_database"``.
    """
    from asset3d.web.settings import missing_sqlite_file
    from storage.catalogue import CatalogueUnavailable, redact_url

    path = missing_sqlite_file(url)
    if path is not None:
        raise CatalogueUnavailable(
            f"catalogue {redact_url(url)}: no database file at {path} (create one with "
            f"`asset3d db upgrade --catalogue-url {redact_url(url)}`, or convert photos first)",
            reason="no_database",
        )


def guarded(fn: CatalogueHandler) -> Handler:
    """Run ``fn(args, catalogue)`` on the catalogue ``--catalogue-url`` names, closing it afterwards, and
    turn catalogue errors into one clear line on stderr and an exit code.

    The catalogue used is announced on stderr; a SQLite file that does not exist is not created.
    Unknown ids, refused transitions, bad input and a missing database file exit 2; an unreachable
    database exits 1.
    """

    def run(args: argparse.Namespace) -> int:
        from storage.catalogue import Catalogue, CatalogueError, CatalogueUnavailable, redact_secrets

        cat: Catalogue | None = None
        try:
            url = resolved_url(args)
            announce(url)
            require_database(url)
            cat = Catalogue(url)
            return fn(args, cat)
        except CatalogueUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 1 if err.reason == "unreachable" else 2
        except CatalogueError as err:
            print(f"error: {err} [{err.reason}]", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `... | head`: the reader left
            return 0
        except Exception as err:  # a driver error we did not map: never print a password
            print(f"error: {type(err).__name__}: {redact_secrets(str(err)).splitlines()[0]}", file=sys.stderr)
            return 1
        finally:
            if cat is not None:
                cat.close()

    run.__doc__ = fn.__doc__
    return run


def metric_filter(text: str) -> MetricFilter:
    """argparse type of ``--metric NAME<OP>VALUE``."""
    from storage.catalogue import InvalidInput, MetricFilter

    try:
        return MetricFilter.parse(text)
    except InvalidInput as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def check_metric_names(cat: Catalogue, filters: Sequence[MetricFilter]) -> None:
    """Refuse filters on metrics the catalogue never recorded, listing the known names.

    Raises
    ------
    storage.catalogue.InvalidInput
        ``reason="unknown_metric"``.
    """
    from asset3d.web.present import unknown_metric_message
    from storage.catalogue import InvalidInput

    if not filters:
        return
    message = unknown_metric_message(filters, cat.metric_names())
    if message is not None:
        raise InvalidInput(message, reason="unknown_metric")


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return n


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
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    if hasattr(value, "value"):  # enums
        return str(value.value)
    return str(value)
