"""The `asset3d` command line.

Each subcommand lives in its own module under `asset3d/cli/` and exposes
`register(subparsers)`, which adds its parser and sets `func` (args -> exit code).

Exit codes: 0 success; 1 a command line refused before work started (`asset3d.cli.preflight.Refused`:
one line naming the item and the cause) or a fatal error; 2 some photos failed (or an input of a catalogue
command was refused). Errors are one line; ``asset3d --debug COMMAND`` (or ``ASSET3D_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from asset3d import __version__

# Order is the order `asset3d --help` lists them in.
COMMAND_MODULES: tuple[str, ...] = (
    "asset3d.cli.demo",
    "asset3d.cli.convert",
    "asset3d.cli.run_batch",
    "asset3d.cli.nightly",
    "asset3d.cli.emit_batch",
    "asset3d.cli.watch",
    "asset3d.cli.listen",
    "asset3d.cli.deploy",
    "asset3d.cli.model",
    "asset3d.cli.dataset",
    "asset3d.cli.train",
    "asset3d.cli.eval",
    "asset3d.cli.preprocess",
    "asset3d.cli.mesh2glb",
    "asset3d.cli.catalogue",
    "asset3d.cli.review",
    "asset3d.cli.runs",
    "asset3d.cli.gc",
    "asset3d.cli.db",
    "asset3d.cli.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asset3d",
        description=(
            "Turn product photos into web-ready 3D assets: background removal, TripoSR "
            "reconstruction, GLB export, a SQL catalogue of assets, metrics and reviews."
        ),
        epilog="Run `asset3d COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"asset3d {__version__}")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of errors (also ASSET3D_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from asset3d.cli.preflight import Refused

    debug = args.debug or os.environ.get("ASSET3D_DEBUG", "") not in ("", "0", "false")
    name = f"asset3d {args.command}" if args.command else "asset3d"
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Refused as err:
        if debug:
            traceback.print_exc()
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a fatal error: one line naming the cause (secrets masked), the traceback on demand
        from asset3d.pipeline.errors import describe
        from storage.catalogue.settings import redact_secrets

        if debug:
            traceback.print_exc()
        reason, message = describe(err)
        hint = "" if debug else " (--debug shows the traceback)"
        print(f"{name}: fatal: {redact_secrets(message.strip().splitlines()[0] if message.strip() else reason)} [{reason}]{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
