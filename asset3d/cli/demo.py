"""`asset3d demo`: the whole pipeline once on the bundled sample photos, on embedded defaults.

The sample photos in ``examples/photos/<SKU>/`` are the source "bucket" (a local folder); assets go to
``./demo-out/assets``, the catalogue is ``./demo-out/catalogue.db`` (SQLite, created on the spot), and the
``convert_batch`` flow runs on a temporary Prefect server (its files under ``./demo-out/prefect`` unless
``PREFECT_HOME`` says otherwise). It ends with the catalogue summary.

The model (`pick_model`), for ``--model auto``: the official ``stabilityai/TripoSR`` weights, from the
Hugging Face cache or else fetched from the hub (`triposr.loading.fetch_model`, progress bars on stderr);
when the hub does not answer, one line says so and the bundled demo model runs (an untrained tiny model
where that is missing too). ``--model demo`` runs the bundled model without touching the network. The grid
is the ``mc_resolution`` setting, the same as `convert`'s. The run row records the weights' sha256.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asset3d.pipeline.models import ModelChoice

#: The bundled sample photos, one folder per SKU (a fresh clone has nothing else).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "photos"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="convert the bundled sample photos on embedded defaults (local buckets, SQLite, ephemeral Prefect)",
        description=(
            "Run the whole pipeline once on the sample photos in examples/photos with embedded defaults: a local "
            "folder as the source bucket, ./demo-out/assets as the destination, a SQLite catalogue in ./demo-out "
            "and a temporary Prefect server; then print the catalogue summary. Fetches the official TripoSR weights "
            "when they are not cached and the hub (HF_ENDPOINT) answers, else runs the bundled demo model; says "
            "which model ran."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default ./demo-out)")
    p.add_argument("--photos", type=Path, default=EXAMPLES, help="source folder, one sub-folder per SKU (default: the samples)")
    p.add_argument(
        "--model", default="auto",
        help="model source (default auto: the official weights, fetched if not cached, else the bundled demo model; "
        "'demo' runs the bundled model offline)",
    )  # fmt: skip
    p.add_argument(
        "--mc-resolution", type=int, default=None, help="marching-cubes grid (default: the mc_resolution setting, as convert)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(out / "prefect"))  # before Prefect is imported
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from asset3d.pipeline.errors import describe
    from asset3d.pipeline.models import model_identity
    from asset3d.pipeline.settings import SettingsError, load_settings
    from asset3d.pipeline.summary import BatchSummary
    from triposr.loading import ModelNotAvailable

    if not args.photos.is_dir() or not any(args.photos.rglob("*.*")):
        print(f"asset3d demo: no sample photos in {args.photos}", file=sys.stderr)
        return 1
    choice = pick_model(args.model)
    url = f"sqlite:///{out / 'catalogue.db'}"
    try:
        settings = load_settings(
            dest=str(out / "assets"), catalogue_url=url, model=choice.source, mc_resolution=args.mc_resolution
        )
        _choice, _model_id, weights_sha256 = model_identity(choice.source)
    except (SettingsError, ModelNotAvailable) as err:
        print(f"asset3d demo: {err}", file=sys.stderr)
        return 1
    banner = f"model: {choice.label}"
    print("=" * len(banner), banner, "=" * len(banner), sep="\n")
    print(f"weights sha256 {weights_sha256}")
    print(f"source {args.photos}  ->  {settings.dest}   catalogue {url}   grid {settings.mc_resolution}^3\n")
    from asset3d.cli.convert import worker_environment
    from asset3d.cli.tempserver import ensure_prefect_server

    try:
        ensure_prefect_server("asset3d demo")  # before Prefect loads: it reads PREFECT_API_URL once
        from flows.convert import convert_batch

        with worker_environment(settings):
            report = convert_batch(str(args.photos.resolve()))
    except Exception as err:  # the flow failed as a whole
        print(f"asset3d demo: fatal: {describe(err)[1]}", file=sys.stderr)
        return 1
    summary = BatchSummary.from_dict(report)
    print(summary.markdown())
    print_catalogue(url)
    print(f"\n{banner}")
    if choice.kind == "untrained":
        print("(no trained model here: put the official weights in the Hugging Face cache with "
              "`asset3d model fetch stabilityai/TripoSR` on a machine with network, then run `make demo` again)")  # fmt: skip
    print(f"assets, previews and metrics: {out / 'assets'}")
    return 0


def pick_model(requested: str) -> ModelChoice:
    """The model the demo runs; for ``auto`` it fetches the official weights when they are not cached.

    When the fetch fails (``HF_HUB_OFFLINE``, no connection to the hub within 3 s, a failed download) one line
    on stderr says why and what runs instead: `choose_model`'s pick without the official weights.
    """
    from asset3d.pipeline.models import OFFICIAL, choose_model, official_weights_cached
    from triposr.loading import ModelNotAvailable, fetch_model

    if requested in ("auto", "") and not official_weights_cached():
        try:
            fetch_model(OFFICIAL, progress=True)
        except ModelNotAvailable as exc:
            fallback = choose_model(requested)
            print(f"asset3d demo: {exc}; falling back to {fallback.label}", file=sys.stderr)
            return fallback
    return choose_model(requested)


def print_catalogue(url: str) -> None:
    """The catalogue summary: assets by status, then every asset."""
    from asset3d.cli._catalogue import print_table
    from storage.catalogue import Catalogue

    cat = Catalogue(url)
    try:
        counts = cat.counts_by_status()
        print("## Catalogue\n")
        print_table(["status", "assets"], [(s.value, n) for s, n in counts.items() if n] + [("total", sum(counts.values()))])
        print()
        print_table(
            ["id", "status", "sku", "faces", "glb"],
            [(a.id, a.status.value, a.sku, a.faces, a.glb_uri) for a in cat.review_queue(limit=None)],
            empty="no assets",
        )
    finally:
        cat.close()
