"""From a reconstructed mesh to a marketplace-ready GLB: clean-up, decimation, colour, orientation,
texture baking, GLB writing and validation, previews, metrics and review. Pure functions; no Prefect.

Entry point: `build_asset(mesh, preset, out_dir=..., field_color=None, metadata=..., real_size_m=None)`.
"""

from meshing.asset import AssetResult, build_asset, input_view_metrics
from meshing.errors import MeshingError
from meshing.presets import PRESETS, Preset, get_preset

__all__ = [
    "PRESETS",
    "AssetResult",
    "MeshingError",
    "Preset",
    "build_asset",
    "get_preset",
    "input_view_metrics",
]
