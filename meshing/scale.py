"""Real-world size: scale an asset so its bounding box matches the product's dimensions.

TripoSR's output has no real size (the official frame spans about one unit, so every asset
would be about 0.9 m tall). A product's dimensions (any subset of width, height, depth, in
metres, on the asset's glTF axes: width x, height y, depth z) set one uniform scale:

1. the largest given dimension sets the scale (when only the height is given, the height);
2. the model keeps its proportions (uniform scale), axis-aligned, resting on y = 0, centred in x/z;
3. the aspect mismatch says how far the model's proportions are from the product's (below).

Aspect mismatch: for each given dimension i let k_i = product_i / model_extent_i, the scale
that would fit that dimension alone. The mismatch is max_i k_i / min_i k_i, which equals the
largest over given pairs (i, j) of the ratio of ratios max((P_i/P_j)/(M_i/M_j), its inverse).
It is 1 when the proportions agree, >= 1 always, and None when fewer than two dimensions are
given. A large value means the photo shows another product or the reconstruction is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from meshing.errors import MeshingError

#: where the dimensions came from (the caller says); None for an unscaled asset
SizeSource = Literal["catalogue", "sidecar", "flag"]
AXES = ("width_m", "height_m", "depth_m")  # glTF x, y, z


@dataclass(frozen=True)
class ProductSize:
    """A product's real dimensions in metres (any subset) and where they came from.

    Attributes
    ----------
    width_m, height_m, depth_m
        Bounding-box size along the asset's x (width), y (height, up) and z (depth, front).
    source
        Who gave them: `catalogue`, `sidecar` or `flag` (recorded in the metrics).
    """

    width_m: float | None = None
    height_m: float | None = None
    depth_m: float | None = None
    source: SizeSource = "flag"

    def __post_init__(self) -> None:
        given = self.given()
        if not given:
            raise MeshingError("bad_input", "product size: give at least one of width_m, height_m, depth_m")
        for axis, value in given.items():
            if not (np.isfinite(value) and value > 0):
                raise MeshingError(
                    "bad_input", f"product size {AXES[axis]}={value}: must be a positive number of metres"
                )
        if self.source not in ("catalogue", "sidecar", "flag"):
            raise MeshingError(
                "bad_input", f"product size source={self.source!r}: expected catalogue, sidecar or flag"
            )

    def given(self) -> dict[int, float]:
        """The given dimensions by axis index (0 x width, 1 y height, 2 z depth)."""
        values = (self.width_m, self.height_m, self.depth_m)
        return {axis: float(v) for axis, v in enumerate(values) if v is not None}

    def as_dict(self) -> dict[str, Any]:
        return {
            "width_m": self.width_m,
            "height_m": self.height_m,
            "depth_m": self.depth_m,
            "source": self.source,
        }


@dataclass(frozen=True)
class ScaleFit:
    """How an asset was sized.

    Attributes
    ----------
    scale
        Uniform factor, model units -> metres (1.0 when unscaled).
    unscaled
        No dimensions were given: the model's own units are written as metres.
    source
        Where the dimensions came from (None when unscaled).
    basis
        The dimension that set the scale (`height_m`, ...), None when unscaled.
    aspect_mismatch
        max k_i / min k_i over the given dimensions (module docstring); None with fewer than two.
    size_m
        (3,) the asset's bounding box after scaling: width, height, depth.
    product
        The given dimensions (None when unscaled).
    """

    scale: float
    unscaled: bool
    source: str | None
    basis: str | None
    aspect_mismatch: float | None
    size_m: tuple[float, float, float]
    product: ProductSize | None = None

    def as_dict(self) -> dict[str, Any]:
        """The metrics record (`metrics["scale"]`)."""
        return {
            "unscaled": self.unscaled,
            "source": self.source,
            "basis": self.basis,
            "scale_factor": self.scale,
            "aspect_mismatch": self.aspect_mismatch,
            "size_m": list(self.size_m),
            "product_m": None if self.product is None else {k: getattr(self.product, k) for k in AXES},
        }


def _triple(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def fit_scale(extents: np.ndarray, size: ProductSize | None) -> ScaleFit:
    """The uniform scale that makes a model's bounding box match a product's dimensions.

    Parameters
    ----------
    extents
        (3,) the model's bounding-box size on the glTF axes (width x, height y, depth z), in its
        own units (`meshing.orient.gltf_extents`).
    size
        The product's dimensions, or None (unscaled: factor 1).

    Returns
    -------
    ScaleFit

    Raises
    ------
    MeshingError
        `bad_input` when a given dimension lies along an axis the model has no extent in.
    """
    ext = np.asarray(extents, dtype=np.float64).reshape(3)
    if size is None:
        return ScaleFit(1.0, True, None, None, None, _triple(ext))
    given = size.given()
    for axis in given:
        if not ext[axis] > 0:
            raise MeshingError("bad_input", f"the model has no extent along {AXES[axis]}; cannot match it")
    # the largest given dimension sets the scale (with the height alone, the height)
    basis = max(given, key=lambda axis: (given[axis], axis == 1))
    scale = given[basis] / float(ext[basis])
    fits = np.array([given[axis] / float(ext[axis]) for axis in sorted(given)])
    mismatch = float(fits.max() / fits.min()) if len(fits) >= 2 else None
    return ScaleFit(
        scale=float(scale),
        unscaled=False,
        source=size.source,
        basis=AXES[basis],
        aspect_mismatch=mismatch,
        size_m=_triple(ext * scale),
        product=size,
    )
