"""The `asset3d` command line.

Each subcommand lives in its own module under `asset3d/cli/` and exposes
`register(subparsers)`, which adds its parser and sets `func` (args -> exit code).
Exit codes: 0 success, 1 unexpected error, 2 refused input or partial failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
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
    "asset3d.cli.deploy",
    "asset3d.cli.model",
    "asset3d.cli.dataset",
    "asset3d.cli.train",
    "asset3d.cli.eval",
    "asset3d.cli.preprocess",
    "asset3d.cli.mesh2glb",
    "asset3d.cli.catalogue",
    "asset3d.cli.review",
    "asset3d.cli.db",
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
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
