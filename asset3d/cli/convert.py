"""`asset3d convert`: local photos in, GLB + previews + metrics out, catalogue updated. No Prefect.

The same driver as the batch flows (`asset3d.pipeline.driver`: plan and skip, intake, micro-batched
reconstruction, meshing, the review gate, publishing with a manifest, the catalogue, run bookkeeping), run
in this process with a line per photo. Exit 0 when every photo converted (or was already converted), 2 when
some failed (one line each), 1 on a refused command line or a fatal error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asset3d.cli.preflight import Refused, photo_files, store, unreadable_images


def add_settings_options(p: argparse.ArgumentParser) -> None:
    """The options `convert`, `run-batch` and `nightly` share (each overrides the setting of its name)."""
    p.add_argument(
        "--preset", default=None,
        help="web, shopify, amazon, google or apple; several channels comma-separated, e.g. shopify,apple (default: web)",
    )  # fmt: skip
    p.add_argument("--model", default=None, help="model folder, hub id, 'demo' or 'auto' (default: auto)")
    p.add_argument("--catalogue-url", default=None, help="catalogue database URL (default: $ASSET3D_CATALOGUE_URL, else SQLite)")
    p.add_argument("--config", type=Path, default=None, help="YAML/TOML settings file (default: $ASSET3D_CONFIG)")
    p.add_argument("--batch-size", type=int, default=None, help="photos per reconstruction micro-batch")
    p.add_argument("--device", default=None, help="cuda, cpu, mps or auto")
    p.add_argument("--json", action="store_true", help="print the batch report as JSON")


def settings_from(args: argparse.Namespace, **extra: Any) -> Any:
    """The settings of a command: its flags over the environment over the config file (`load_settings`)."""
    from asset3d.pipeline.settings import SettingsError, load_settings

    try:
        return load_settings(
            args.config, preset=args.preset, model=args.model, catalogue_url=args.catalogue_url,
            batch_size=args.batch_size, device=args.device, **extra,
        )  # fmt: skip
    except SettingsError as err:
        raise Refused(str(err)) from None


@contextlib.contextmanager
def worker_environment(settings: Any) -> Iterator[None]:
    """Run a flow in this process as a worker with ``settings`` would: they travel as this process's
    ``ASSET3D_*`` environment (restored afterwards), never as flow parameters, which Prefect stores."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("ASSET3D_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(settings.as_environment())
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("ASSET3D_")]:
            del os.environ[k]
        os.environ.update(saved)


def say_catalogue(settings: Any) -> None:
    """Which catalogue the command uses, on stderr (password masked)."""
    from storage.catalogue import redact_url

    print(f"catalogue: {redact_url(settings.resolved_catalogue_url())}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert local photos (files or folders) to GLB + previews + metrics (no Prefect), updating the catalogue",
        description=(
            "Convert local photos: intake, TripoSR, meshing, the review gate, then write "
            "OUT/SKU/CONVERSION_KEY/{model.glb,previews/,intake/,metrics.json} (+ manifest.json once approved) and "
            "update the catalogue. Photos already converted for their bytes, model and parameters are skipped "
            "(--force converts them again). Folders are searched recursively for PNG, JPEG, WebP and TIFF files. "
            "Exit 0 when all photos converted or were skipped, 2 when some failed, 1 when the command line is "
            "refused or the run cannot start."
        ),
    )
    p.add_argument("images", nargs="+", type=Path, metavar="PHOTO", help="photo files or folders of photos")
    p.add_argument("--out", type=Path, required=True, help="output folder (the destination 'bucket')")
    p.add_argument(
        "--sku", default=None,
        help="SKU for every photo (default: a file's name without suffix; for photos found in a folder, their parent folder's name)",
    )  # fmt: skip
    p.add_argument(
        "--relabel", action="store_true",
        help="with --sku: move photos already catalogued under another SKU to this one (their assets keep their folders)",
    )  # fmt: skip
    p.add_argument("--force", action="store_true", help="convert photos again even when already converted")
    size = p.add_argument_group(
        "real-world size",
        "the product's dimensions in metres, for every photo given (default: a sidecar's, else the catalogue's "
        "product row; without any, the asset is flagged unscaled). The largest given dimension sets the scale.",
    )
    size.add_argument("--width-m", type=float, default=None, metavar="M", help="width (x)")
    size.add_argument("--height-m", type=float, default=None, metavar="M", help="height (y, up)")
    size.add_argument("--depth-m", type=float, default=None, metavar="M", help="depth (z, front)")
    add_settings_options(p)
    p.set_defaults(func=run)


def _items(files: list[tuple[Path, bool]], sku: str | None) -> list[dict[str, str]]:
    """The driver's source: each photo's URI, and its SKU where this command decides it."""
    items = []
    for path, given in files:
        uri = path.resolve().as_uri()
        name = sku or (path.stem if given else None)
        items.append({"uri": uri, "sku": name} if name else {"uri": uri})
    return items


def _check_relabel(settings: Any, items: list[dict[str, str]], sku: str) -> None:
    """Refuse a ``--sku`` that would move photos already catalogued under another SKU."""
    from asset3d.pipeline.records import open_catalogue

    url = settings.resolved_catalogue_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return  # no catalogue yet: nothing to re-label
    known = open_catalogue(url, auto_migrate=settings.auto_migrate).photos_by_uri(i["uri"] for i in items)
    moved = sorted((uri, p.sku) for uri, p in known.items() if p.sku != sku)
    if moved:
        uri, old = moved[0]
        more = f" (and {len(moved) - 1} more)" if len(moved) > 1 else ""
        raise Refused(f"--sku {sku}: {uri} is catalogued under SKU {old}{more}; add --relabel to move it")


def run(args: argparse.Namespace) -> int:
    files = photo_files(args.images)
    out = args.out.resolve()
    store(str(out), role="--out", must_exist=False)
    settings = settings_from(args, dest=str(out), width_m=args.width_m, height_m=args.height_m, depth_m=args.depth_m)
    items = _items(files, args.sku)
    if args.sku and not args.relabel:
        _check_relabel(settings, items, args.sku)
    elif args.sku:
        from asset3d.pipeline.records import open_catalogue

        moved = open_catalogue(settings.resolved_catalogue_url(), auto_migrate=settings.auto_migrate).relabel_photos(
            (i["uri"] for i in items), args.sku
        )
        if moved:
            print(f"asset3d convert: {moved} photos moved to SKU {args.sku} (their assets keep their folders)", file=sys.stderr)
    bad = unreadable_images(p for p, _ in files)
    for path, why in bad.items():
        print(f"asset3d convert: {path}: {why}", file=sys.stderr)
    if len(bad) == len(files):
        return 2
    say_catalogue(settings)
    summary = convert_local(items, settings, force=args.force)
    print_report(summary, as_json=args.json)
    return summary.exit_code()


class TerminalReporter:
    """A line per photo on stderr, as photos finish."""

    def info(self, message: str) -> None:
        print(message, file=sys.stderr)

    def warning(self, message: str) -> None:
        pass  # each failure has its own line in `photo_done`

    def photo_done(self, outcome: Any, finished: int, total: int) -> None:
        o = outcome
        secs = sum(o.timings_s.values())
        if o.status.is_failure:
            detail = f"{o.status.value} at {o.stage} ({o.reason})"
        elif o.glb_uri:
            detail = f"{o.status.value}, {o.faces} faces -> {o.glb_uri}"
        else:
            detail = o.status.value
        print(f"[{finished}/{total}] {o.name}: {detail} ({secs:.1f} s)", file=sys.stderr)


def print_report(summary: Any, *, as_json: bool) -> None:
    """The report on stdout (markdown, or JSON) and one line per failure on stderr."""
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        print(summary.markdown())
    for o in summary.failed:
        print(o.line(), file=sys.stderr)


def convert_local(source: Any, settings: Any, *, force: bool = False, reporter: Any = None) -> Any:
    """Convert photos with the driver in this process (no Prefect); returns the `BatchSummary`."""
    from asset3d.pipeline.driver import Driver, InlineRunner

    runner = InlineRunner.for_settings(settings)
    try:
        driver = Driver(settings, runner, kind="convert", reporter=reporter or TerminalReporter())
        return driver.run(source, force=force)
    finally:
        runner.close()
