"""`asset3d mesh2glb`: one reconstructed mesh to a validated marketplace GLB, with previews and metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asset3d import __version__

UNAVAILABLE = {"validator_unavailable", "renderer_unavailable"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mesh2glb",
        help="turn one reconstructed mesh (OBJ/PLY/GLB, official z-up frame) into a validated GLB",
        description=(
            "Clean up, decimate, colour, orient (glTF y-up, front +z, on y=0), bake, write and "
            "validate one mesh for a storefront preset; prints the metrics JSON. Exit 2 when the "
            "input is refused or the preset cannot be met."
        ),
    )
    p.add_argument("mesh", type=Path, help="input mesh with vertex colours (e.g. a TripoSR .obj)")
    p.add_argument("--out", type=Path, required=True, help="output .glb path")
    p.add_argument(
        "--preset",
        default="web",
        help=(
            "channel(s): web, shopify, amazon, google, apple, or several comma-separated (shopify,apple: "
            "OUT.glb for the first, OUT.usdz for apple, OUT.<preset>.glb for other GLB channels); default web"
        ),
    )
    p.add_argument("--faces", type=int, default=None, help="face budget (default: the preset's)")
    p.add_argument("--texture-size", type=int, default=None, help="texture side in px (textured presets)")
    p.add_argument(
        "--previews", type=Path, default=None, help="folder for turntable PNGs and a contact sheet"
    )
    for dim, axis in (("width", "x"), ("height", "y, up"), ("depth", "z, front")):
        p.add_argument(
            f"--{dim}-m",
            type=float,
            default=None,
            help=f"real {dim} of the product in metres ({axis}); the largest given one sets the scale",
        )
    p.add_argument("--draco", action="store_true", help="Draco-compress the geometry")
    p.add_argument(
        "--meshopt", action="store_true", help="EXT_meshopt_compression where a channel accepts it (web)"
    )
    p.add_argument("--webp", action="store_true", help="WebP textures where a textured channel accepts them")
    p.add_argument("--fill-holes", action="store_true", help="close small holes")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="provenance for asset.extras (repeatable)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the whole result (paths, metrics, validator) as JSON"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import trimesh

    from meshing import AssetOptions, MeshingError, ProductSize, build_asset

    if args.out.suffix.lower() != ".glb":
        print(f"--out {args.out}: expected a .glb path", file=sys.stderr)
        return 2
    if not args.mesh.is_file():
        print(f"{args.mesh}: no such mesh file", file=sys.stderr)
        return 2
    metadata = {"pipeline_version": __version__}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"--meta {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        metadata[key] = value
    try:
        mesh = trimesh.load(args.mesh, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        print(f"{args.mesh}: cannot read the mesh ({exc})", file=sys.stderr)
        return 2
    try:
        dims = {"width_m": args.width_m, "height_m": args.height_m, "depth_m": args.depth_m}
        size = ProductSize(**dims, source="flag") if any(v is not None for v in dims.values()) else None
        options = AssetOptions(
            preset=args.preset,
            faces=args.faces,
            texture_size=args.texture_size,
            draco=True if args.draco else None,
            meshopt=args.meshopt,
            webp=args.webp,
            size=size,
            name=args.out.stem,
            fill_holes=args.fill_holes,
            previews=args.previews is not None,
            preview_dir=str(args.previews.resolve()) if args.previews is not None else "previews",
        )
        result = build_asset(mesh, options, out_dir=args.out.parent, metadata=metadata)
    except MeshingError as exc:
        print(
            json.dumps({"error": exc.reason, "message": exc.message, "details": exc.details}), file=sys.stderr
        )
        return 1 if exc.reason in UNAVAILABLE else 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        v = result.validation
        print(
            f"wrote {result.glb_path} ({result.metrics['file']['bytes']} B, {result.metrics['file']['triangles']} "
            f"triangles, preset {result.preset}: limits ok; validator {v.errors if v else '-'} errors, "
            f"{v.warnings if v else '-'} warnings)",
            file=sys.stderr,
        )
        for f in result.files:
            if f.channel is not None and f.path != result.glb_path:
                print(f"wrote {f.path} ({f.content_type}, channel {f.channel})", file=sys.stderr)
        print(json.dumps(result.metrics, indent=2))
    return 0
