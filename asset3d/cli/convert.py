"""`asset3d convert`: local photos in, GLB + previews + metrics out, catalogue updated. No Prefect.

The official ``run.py``'s job done right: the same stages as the batch flow (intake, micro-batched
reconstruction, meshing, review, publish with a manifest, catalogue), run in this process with a line
per photo. Exit 0 when every photo converted, 2 when some failed (one line each), 1 on a fatal error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def add_settings_options(p: argparse.ArgumentParser) -> None:
    """The options `convert`, `run-batch` and `demo` share (each overrides the setting of its name)."""
    p.add_argument("--preset", default=None, help="web, shopify or amazon (default: the preset setting, web)")
    p.add_argument("--model", default=None, help="model folder, hub id, 'demo' or 'auto' (default: auto)")
    p.add_argument("--catalogue-url", default=None, help="catalogue database URL (default: $ASSET3D_CATALOGUE_URL, else SQLite)")
    p.add_argument("--config", type=Path, default=None, help="YAML/TOML settings file (default: $ASSET3D_CONFIG)")
    p.add_argument("--batch-size", type=int, default=None, help="photos per reconstruction micro-batch")
    p.add_argument("--device", default=None, help="cuda, cpu, mps or auto")
    p.add_argument("--json", action="store_true", help="print the batch report as JSON")


def settings_from(args: argparse.Namespace, **extra: Any) -> Any:
    from asset3d.pipeline.settings import load_settings

    return load_settings(
        args.config, preset=args.preset, model=args.model, catalogue_url=args.catalogue_url,
        batch_size=args.batch_size, device=args.device, **extra,
    )  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert local photos to GLB + previews + metrics (no Prefect), updating the catalogue",
        description=(
            "Convert local photos: intake, TripoSR, meshing, review, then write "
            "OUT/SKU/ASSET_ID/{model.glb,previews/,metrics.json,manifest.json} and update the catalogue. "
            "Exit 0 when all photos converted, 2 when some failed, 1 on a fatal error."
        ),
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="photo files (PNG, JPEG, WebP, TIFF)")
    p.add_argument("--out", type=Path, required=True, help="output folder (the destination 'bucket')")
    p.add_argument("--sku", default=None, help="SKU for every photo (default: each file's name without suffix)")
    add_settings_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from asset3d.pipeline.errors import describe
    from asset3d.pipeline.settings import SettingsError

    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        print(f"asset3d convert: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        settings = settings_from(args, dest=str(args.out.resolve()))
        summary = convert_local(args.images, settings, sku=args.sku)
    except SettingsError as err:
        print(f"asset3d convert: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a fatal error: model, catalogue or destination unusable
        print(f"asset3d convert: fatal: {describe(err)[1]}", file=sys.stderr)
        return 1
    print_report(summary, as_json=args.json)
    return summary.exit_code()


def print_report(summary: Any, *, as_json: bool) -> None:
    """The report on stdout (markdown, or JSON) and one line per failure on stderr."""
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        print(summary.markdown())
    for o in summary.failed:
        print(o.line(), file=sys.stderr)


def convert_local(images: list[Path], settings: Any, *, sku: str | None = None) -> Any:
    """Convert local photo files with the pipeline's stages in this process; returns a `BatchSummary`."""
    from asset3d.pipeline import assets, models, photos, records
    from asset3d.pipeline.errors import describe
    from asset3d.pipeline.summary import BatchSummary, PhotoOutcome
    from storage import open_store
    from storage.catalogue import conversion_key

    t0 = time.perf_counter()
    cat = records.open_catalogue(settings.resolved_catalogue_url(), auto_migrate=settings.auto_migrate)
    loaded = models.get_model(settings.model, settings.device, settings.dtype)
    print(f"model: {loaded.choice.label} ({loaded.model_id})", file=sys.stderr)
    ctx = records.start_run(
        cat, settings, model_id=loaded.model_id, model_label=loaded.choice.label, model_source=loaded.choice.source,
        weights_sha256=loaded.weights_sha256, flow_run_id=None,
    )  # fmt: skip
    refs = []
    for image in images:
        path = image.resolve()
        store = open_store(path.parent)
        info = store.head(path.name)
        name = sku or path.stem
        refs.append(photos.PhotoRef(store.uri_for(path.name), store.uri, path.name, name, info.etag, info.size))
    outcomes = [PhotoOutcome(r.uri, r.sku) for r in refs]
    summary = BatchSummary("convert", outcomes, model_label=loaded.choice.label, model_id=loaded.model_id,
                           weights_sha256=loaded.weights_sha256, run_ids=[ctx.run_id])  # fmt: skip
    n = len(refs)

    def fail(i: int, stage: str, err: BaseException, facts: Any = None, settle: bool | None = None) -> None:
        o = outcomes[i]
        o.status, o.stage = "failed", getattr(err, "stage", stage)
        o.reason, o.message = describe(err)
        records.record_failure(cat, ctx, refs[i], o.stage, err, facts or getattr(err, "facts", None), settle=settle)
        print(f"[{i + 1}/{n}] {refs[i].name}: failed at {o.stage} ({o.reason})", file=sys.stderr)

    def timed(i: int, stage: str, fn: Any, *a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        value = fn(*a, **k)
        outcomes[i].timings_s[stage] = round(time.perf_counter() - start, 4)
        return value

    for lo in range(0, n, settings.batch_size):
        batch: list[tuple[int, photos.Prepared, Any]] = []
        for i in range(lo, min(n, lo + settings.batch_size)):
            try:
                fetched = timed(i, "fetch", photos.fetch_photo, refs[i], max_bytes=settings.max_photo_bytes)
            except Exception as err:
                fail(i, "fetch", err)
                continue
            try:
                batch.append((i, timed(i, "intake", photos.prepare_photo, fetched, settings), fetched.facts()))
            except Exception as err:
                fail(i, "intake", err, fetched.facts())
        if not batch:
            continue
        start = time.perf_counter()
        try:
            recons = models.reconstruct_batch(loaded, [p for _, p, _ in batch], resolution=settings.mc_resolution, threshold=settings.mc_threshold)
        except Exception as err:  # the whole micro-batch: no photo's fault
            for i, _, facts in batch:
                fail(i, "reconstruct", err, facts, settle=False)
            continue
        share = round((time.perf_counter() - start) / len(batch), 4)
        for (i, prepared, facts), recon in zip(batch, recons, strict=True):
            outcomes[i].timings_s["reconstruct"] = share
            if isinstance(recon, BaseException):
                fail(i, "reconstruct", recon, facts)
                continue
            ref, stage = refs[i], "build"
            try:
                asset_id = conversion_key(prepared.sha256, ctx.params_hash, ctx.weights_sha256)
                built = timed(i, "build", assets.build, prepared, recon, loaded, settings, asset_id=asset_id)
                provenance = records.provenance(ctx, ref, built)
                stage = "publish"
                published = timed(i, "publish", assets.publish, built, settings.dest, provenance=provenance,
                                  manifest=built.decision == "auto_approved")  # fmt: skip
                stage = "record"
                asset = timed(i, "record", records.record_asset, cat, ctx, ref, facts, built, published)
            except Exception as err:
                fail(i, stage, err, facts)
                continue
            o = outcomes[i]
            o.converted(asset, built, published)
            secs = sum(o.timings_s.values())
            print(f"[{i + 1}/{n}] {ref.name}: {o.status}, {built.faces} faces -> {published.glb_uri} ({secs:.1f} s)", file=sys.stderr)
    cat.finish_run(ctx.run_id)
    summary.wall_s = time.perf_counter() - t0
    return summary
