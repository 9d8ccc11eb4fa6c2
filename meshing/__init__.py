"""From a reconstructed mesh to marketplace-ready files: clean-up, decimation, colour, orientation,
real-world size, texture baking, materials, GLB (and USDZ) writing and validation, previews,
metrics and review. Pure functions; no Prefect.

Entry point: `build_asset(mesh, AssetOptions(preset="shopify", ...), out_dir=..., field_color=None,
metadata=...)`; the review gate: `meshing.review.review(metrics) -> GateVerdict`.
"""

from meshing.asset import AssetResult, OutputFile, build_asset, input_view_metrics
from meshing.errors import MeshingError
from meshing.options import AssetOptions
from meshing.presets import PRESETS, Preset, get_preset
from meshing.review import GateDecision, GateVerdict
from meshing.scale import ProductSize, ScaleFit, fit_scale

__all__ = [
    "PRESETS",
    "AssetOptions",
    "AssetResult",
    "GateDecision",
    "GateVerdict",
    "MeshingError",
    "OutputFile",
    "Preset",
    "ProductSize",
    "ScaleFit",
    "build_asset",
    "fit_scale",
    "get_preset",
    "input_view_metrics",
]
