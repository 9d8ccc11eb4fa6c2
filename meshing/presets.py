"""Output presets as data: what each storefront (channel) accepts, and the defaults used to meet it.

Every limit a preset states is checked on the written file: GLBs by `meshing.glb.check_limits`,
USDZ packages by `meshing.usdz.check_usdz_limits` (and Pixar's ARKit compliance checker).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from meshing.errors import MeshingError

Appearance = Literal["vertex_colors", "texture"]
TextureFormat = Literal["png", "jpeg"]
Compression = Literal["none", "draco"]
Container = Literal["glb", "usdz"]


@dataclass(frozen=True)
class Preset:
    """One target: limits (checked on the file) and defaults (used to build it).

    Attributes
    ----------
    name
        Preset name (`web`, `shopify`, `amazon`, `google`, `apple`).
    max_triangles
        Most triangles the file may hold.
    max_bytes
        Largest file size in bytes.
    target_bytes
        Size the channel recommends (a warning of the limits check when exceeded, not a failure).
    appearance
        `vertex_colors` (COLOR_0) or `texture` (baked base-colour texture, PBR material).
    default_faces
        Face budget used when the caller gives none (never above `max_triangles`).
    texture_size
        Default texture side in pixels (texture presets only).
    max_texture_size
        Largest texture side allowed in the file.
    texture_square_pow2
        Textures must be square with a power-of-two side.
    texture_format
        Image encoding of the baked texture.
    floor_at_zero
        The model must rest on y = 0 (checked within `floor_tolerance_m`).
    allowed_extensions
        glTF extensions the storefront accepts; any other used extension fails the check.
    compression
        Default geometry compression.
    roughness
        `roughnessFactor` of the asset's material (`metallicFactor` is always 0: TripoSR predicts
        no metal). 0.9: a matte dielectric, since the model predicts no gloss either.
    orm_texture
        The storefront requires metallic-roughness maps: an occlusion-roughness-metallic texture
        (constant where the model predicts none) is bound as `metallicRoughnessTexture` and
        `occlusionTexture`.
    container
        The channel's file: `glb`, or `usdz` (Apple AR Quick Look: a USDZ package beside the
        asset's GLB, written with Pixar's usd-core and checked with its ARKit compliance checker).
    """

    name: str
    max_triangles: int
    max_bytes: int
    appearance: Appearance
    default_faces: int
    texture_size: int | None = None
    max_texture_size: int | None = None
    texture_square_pow2: bool = False
    texture_format: TextureFormat = "png"
    floor_at_zero: bool = True
    floor_tolerance_m: float = 1e-4
    allowed_extensions: frozenset[str] = field(default_factory=frozenset)
    compression: Compression = "none"
    roughness: float = 0.9
    orm_texture: bool = False
    container: Container = "glb"
    target_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view of the preset (extensions as a sorted list)."""
        out = asdict(self)
        out["allowed_extensions"] = sorted(self.allowed_extensions)
        return out


MB = 1024 * 1024

PRESETS: dict[str, Preset] = {
    "web": Preset(
        name="web",
        max_triangles=50_000,
        max_bytes=5 * MB,
        appearance="vertex_colors",
        default_faces=20_000,
        # web viewers (three.js, model-viewer) decode meshopt and WebP; both only when asked
        allowed_extensions=frozenset(
            {"KHR_draco_mesh_compression", "EXT_meshopt_compression", "EXT_texture_webp"}
        ),
    ),
    "shopify": Preset(
        name="shopify",
        max_triangles=100_000,
        max_bytes=15 * MB,
        appearance="texture",
        default_faces=50_000,
        texture_size=2048,
        max_texture_size=2048,
        texture_format="png",
        allowed_extensions=frozenset({"KHR_draco_mesh_compression"}),
    ),
    "amazon": Preset(
        name="amazon",
        max_triangles=200_000,
        max_bytes=15 * MB,
        appearance="texture",
        default_faces=50_000,
        texture_size=2048,
        max_texture_size=2048,
        texture_square_pow2=True,
        texture_format="png",
        # Amazon takes Draco; meshopt and WebP textures are refused
        allowed_extensions=frozenset({"KHR_draco_mesh_compression"}),
        orm_texture=True,
    ),
    "google": Preset(
        name="google",
        max_triangles=100_000,
        max_bytes=15 * MB,
        target_bytes=10 * MB,
        appearance="texture",
        default_faces=50_000,
        texture_size=2048,
        max_texture_size=4096,
        texture_format="png",
        allowed_extensions=frozenset({"KHR_draco_mesh_compression"}),
    ),
    "apple": Preset(
        name="apple",
        max_triangles=100_000,
        max_bytes=25 * MB,
        appearance="texture",
        default_faces=50_000,
        texture_size=2048,
        max_texture_size=2048,
        texture_square_pow2=True,
        texture_format="png",
        allowed_extensions=frozenset({"KHR_draco_mesh_compression"}),
        container="usdz",
    ),
}


def get_preset(name: str | Preset) -> Preset:
    """Look a preset up by name (a `Preset` passes through).

    Raises
    ------
    MeshingError
        reason `unknown_preset` for a name that is not in `PRESETS`.
    """
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise MeshingError(
            "unknown_preset", f"preset {name!r} is not defined (known: {', '.join(sorted(PRESETS))})"
        ) from None
