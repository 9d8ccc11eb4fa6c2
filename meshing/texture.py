"""Texture baking on the CPU: xatlas UV atlas, texel rasterisation, colour sampling, gutter dilation.

No OpenGL context is used. The UV convention is trimesh's (OBJ): v points up, so image row `r`
holds v = 1 - (r + 0.5) / H; trimesh flips v when it writes glTF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh
import xatlas
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from meshing.cleanup import check_mesh
from meshing.errors import MeshingError

ColorFn = Callable[[np.ndarray], np.ndarray]  # (n, 3) points -> (n, 3) float in [0, 1]

MAX_UNWRAP_FACES = 250_000


@dataclass(frozen=True)
class UVAtlas:
    """A UV parametrisation of a mesh (vertices split along chart seams).

    Attributes
    ----------
    vmapping
        (m,) int: for each atlas vertex, the index of the mesh vertex it copies.
    faces
        (f, 3) int: faces in atlas vertex indices (same order as the mesh's faces).
    uv
        (m, 2) float in [0, 1], v up.
    chart
        (f,) int: the chart of each face.
    """

    vmapping: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    chart: np.ndarray

    @property
    def chart_count(self) -> int:
        return int(self.chart.max()) + 1 if len(self.chart) else 0


def _tiles(centroids: np.ndarray, ids: np.ndarray, max_faces: int) -> list[np.ndarray]:
    """Split face ids by recursive median cuts along the longest axis until each tile is small."""
    if len(ids) <= max_faces:
        return [ids]
    p = centroids[ids]
    axis = int(np.argmax(p.max(axis=0) - p.min(axis=0)))
    order = np.argsort(p[:, axis], kind="stable")
    half = len(ids) // 2
    return _tiles(centroids, ids[order[:half]], max_faces) + _tiles(centroids, ids[order[half:]], max_faces)


def unwrap(
    mesh: trimesh.Trimesh,
    *,
    resolution: int = 1024,
    padding: int = 2,
    max_faces: int = MAX_UNWRAP_FACES,
    tile_faces: int = 250,
) -> UVAtlas:
    """UV atlas with xatlas.

    xatlas's chart search grows faster than linearly with the face count, so the mesh is cut
    into spatial tiles of at most `tile_faces` faces (recursive median splits), each charted as
    its own xatlas mesh, and all charts are packed into one atlas. Tile borders become chart
    seams, which the baker's gutter handling treats like any other seam.

    Parameters
    ----------
    mesh
        (v, 3) vertices, (f, 3) faces; decimate first.
    resolution
        Packing resolution in texels (the texture side it will be baked at).
    padding
        Texels between charts.
    max_faces
        Guard: meshes with more faces are refused (reason `too_dense`).
    tile_faces
        Faces per xatlas tile (0 charts the mesh as one piece).

    Returns
    -------
    UVAtlas
    """
    mesh = check_mesh(mesh)
    if len(mesh.faces) > max_faces:
        raise MeshingError(
            "too_dense",
            f"mesh has {len(mesh.faces)} faces, more than the {max_faces} the UV unwrap accepts: decimate first",
            details={"faces": len(mesh.faces), "max_faces": max_faces},
        )
    # xatlas drops faces under an absolute area epsilon (~1e-7) as degenerate, which small faces of a
    # metre-sized model are; charts are scale-free, so unwrap a copy whose bounding box spans 1000
    v64 = np.asarray(mesh.vertices, dtype=np.float64)
    lo, hi = v64.min(axis=0), v64.max(axis=0)
    vertices = ((v64 - (lo + hi) / 2.0) * (1000.0 / max(float(np.linalg.norm(hi - lo)), 1e-12))).astype(
        np.float32
    )
    faces = np.asarray(mesh.faces, dtype=np.int64)
    all_ids = np.arange(len(faces))
    tiles = _tiles(vertices[faces].mean(axis=1), all_ids, tile_faces) if tile_faces > 0 else [all_ids]
    atlas = xatlas.Atlas()
    local_vertices = []
    for ids in tiles:
        used, inverse = np.unique(faces[ids], return_inverse=True)
        local_vertices.append(used)
        atlas.add_mesh(vertices[used], inverse.reshape(-1, 3).astype(np.uint32))
    # packing cost grows with its resolution; above 1024 px pack at 1024 with the padding scaled
    # down, which gives the same gutter in texels once the UVs are used at full size
    pack_res = min(int(resolution), 1024)
    pack = xatlas.PackOptions()
    pack.resolution = pack_res
    pack.padding = max(1, int(np.ceil(padding * pack_res / int(resolution))))
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vmaps, out_faces, uvs = [], np.empty((len(faces), 3), dtype=np.int64), []
    offset = 0
    for tile, (ids, used) in enumerate(zip(tiles, local_vertices, strict=True)):
        vm, idx, uv = atlas[tile]
        vmaps.append(used[vm.astype(np.int64)])
        out_faces[ids] = idx.astype(np.int64) + offset
        uvs.append(uv.astype(np.float64))
        offset += len(vm)
    vmapping = np.concatenate(vmaps)
    uv = np.concatenate(uvs)
    # charts = connected pieces of the atlas mesh (faces sharing atlas vertices)
    nf = len(out_faces)
    rows = np.repeat(np.arange(nf), 3)
    graph = coo_matrix((np.ones(3 * nf), (rows, out_faces.ravel())), shape=(nf, len(vmapping))).tocsr()
    _, chart = connected_components(graph @ graph.T, directed=False)
    return UVAtlas(vmapping=vmapping, faces=out_faces, uv=uv, chart=chart.astype(np.int64))


def rasterize(
    tri_px: np.ndarray, width: int, height: int, *, chunk: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre, and where.

    Parameters
    ----------
    tri_px
        (f, 3, 2) float triangle corners in texel units (x right, y = row from the bottom);
        texel (x, y) has its centre at (x + 0.5, y + 0.5).
    width, height
        Image size.

    Returns
    -------
    face (height, width) int64, -1 where no triangle covers the centre;
    bary (height, width, 3) float32 barycentric weights of the centre in that triangle.
    """
    face_img = np.full(height * width, -1, dtype=np.int64)
    bary_img = np.zeros((height * width, 3), dtype=np.float32)
    tri = np.asarray(tri_px, dtype=np.float64)
    lo = np.floor(tri.min(axis=1) - 0.5).astype(np.int64) + 1  # first centre >= min
    hi = np.floor(tri.max(axis=1) - 0.5).astype(np.int64)  # last centre <= max
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    span = np.maximum(hi - lo + 1, 0)  # (f, 2)
    count = span[:, 0] * span[:, 1]
    # per-face edge-function coefficients: l = A x + B y + C for l1 and l2
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    good = np.abs(den) > 1e-12
    count = np.where(good, count, 0)
    den = np.where(good, den, 1.0)
    coef = np.empty((len(tri), 2, 3), dtype=np.float64)
    coef[:, 0, 0] = (b[:, 1] - c[:, 1]) / den
    coef[:, 0, 1] = (c[:, 0] - b[:, 0]) / den
    coef[:, 1, 0] = (c[:, 1] - a[:, 1]) / den
    coef[:, 1, 1] = (a[:, 0] - c[:, 0]) / den
    # constant term evaluated at the box's first texel centre, so offsets stay small
    ox, oy = lo[:, 0] + 0.5 - c[:, 0], lo[:, 1] + 0.5 - c[:, 1]
    coef[:, :, 2] = coef[:, :, 0] * ox[:, None] + coef[:, :, 1] * oy[:, None]
    coef32 = coef.astype(np.float32)
    ends = np.cumsum(count)
    first = 0
    while first < len(tri):
        base = ends[first - 1] if first else 0
        last = max(int(np.searchsorted(ends, base + chunk, side="right")), first + 1)
        sel = np.arange(first, last)
        first = last
        cnt = count[sel]
        total = int(cnt.sum())
        if total == 0:
            continue
        fid = np.repeat(sel, cnt)
        local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        w = span[fid, 0]
        dx = local % w
        dy = local // w
        k = coef32[fid]  # (n, 2, 3)
        dxf, dyf = dx.astype(np.float32), dy.astype(np.float32)
        l1 = k[:, 0, 0] * dxf + k[:, 0, 1] * dyf + k[:, 0, 2]
        l2 = k[:, 1, 0] * dxf + k[:, 1, 1] * dyf + k[:, 1, 2]
        l3 = 1.0 - l1 - l2
        eps = np.float32(-1e-6)
        inside = (l1 >= eps) & (l2 >= eps) & (l3 >= eps)
        lin = (lo[fid[inside], 1] + dy[inside]) * width + lo[fid[inside], 0] + dx[inside]
        face_img[lin] = fid[inside]
        bary_img[lin, 0] = l1[inside]
        bary_img[lin, 1] = l2[inside]
        bary_img[lin, 2] = l3[inside]
    return face_img.reshape(height, width), bary_img.reshape(height, width, 3)


def _barycentric_2d(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(n, 3, 2) triangles, (n, 2) points -> (n, 3) barycentric weights (unclamped)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    den = np.where(np.abs(den) > 1e-12, den, 1e-12)
    l1 = ((b[:, 1] - c[:, 1]) * (p[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (p[:, 1] - c[:, 1])) / den
    l2 = ((c[:, 1] - a[:, 1]) * (p[:, 0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (p[:, 1] - c[:, 1])) / den
    return np.stack([l1, l2, 1.0 - l1 - l2], axis=1)


@dataclass(frozen=True)
class BakeResult:
    """A baked base-colour texture.

    Attributes
    ----------
    image
        (size, size, 3) uint8, row 0 at the top (v = 1).
    coverage
        Share of texels whose centre lies inside a triangle.
    queried
        Colour queries made (texels sampled directly, before interpolation).
    """

    image: np.ndarray
    coverage: float
    queried: int


def bake_texture(
    mesh: trimesh.Trimesh,
    atlas: UVAtlas,
    color_fn: ColorFn,
    *,
    size: int = 1024,
    step: int = 2,
    seam_px: float = 2.5,
) -> BakeResult:
    """Fill texels with the colour of the surface point they map to, then fill the gutter.

    Every texel whose centre lies in a triangle's UV image maps through its barycentric weights
    to a point on the mesh; `color_fn` gives the colour there. Texels of the gutter within
    `seam_px` of a chart get the colour of the nearest point of that chart's nearest triangle
    (barycentric clamped), so bilinear filtering at chart borders reads true surface colours
    from both sides of a seam; the rest of the gutter copies the nearest chart texel, so
    mipmaps do not bleed background in.

    To save queries, only texels on a grid of `step` are sampled; the others take the
    bilinear blend of their four grid neighbours when all four lie in the same chart, and
    are sampled themselves otherwise (chart borders, thin charts), or when the blend of the
    corners' surface points strays from the texel's own point (folds). `step=1` samples all.
    Faces too small to hold a texel centre claim the free texel under their centroid.

    Parameters
    ----------
    mesh
        The mesh the atlas was made for, in the frame `color_fn` expects.
    atlas
        Its `UVAtlas`.
    color_fn
        `(n, 3) float points -> (n, 3) float colours in [0, 1]`.
    size
        Texture side (square).
    step
        Sampling grid spacing in texels (1 = every texel).
    seam_px
        Width of the gutter band filled with exact colours.

    Returns
    -------
    BakeResult
    """
    if size < 8 or step < 1:
        raise MeshingError("bad_input", f"texture size {size} / step {step}: need size >= 8 and step >= 1")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    tri_px = (atlas.uv * size)[atlas.faces]  # (f, 3, 2) texel units, y up from the bottom
    face_img, bary_img = rasterize(tri_px, size, size)
    if not (face_img >= 0).any():
        raise MeshingError("bad_input", "UV atlas covers no texel centre at this texture size")
    coverage = float((face_img >= 0).mean())
    face = face_img.ravel()
    bary = bary_img.reshape(-1, 3)
    # faces too small to cover any texel centre (tiny charts) claim the free texel under their
    # centroid, so their chart has a colour of its own instead of a neighbouring chart's
    seen = np.zeros(len(atlas.faces), dtype=bool)
    seen[face[face >= 0]] = True
    tiny = np.flatnonzero(~seen)
    if len(tiny):
        cxy = tri_px[tiny].mean(axis=1)
        lin = np.clip(cxy[:, 1].astype(np.int64), 0, size - 1) * size + np.clip(
            cxy[:, 0].astype(np.int64), 0, size - 1
        )
        free = face[lin] < 0
        tiny, lin = tiny[free], lin[free]
        centres = np.stack([lin % size + 0.5, lin // size + 0.5], axis=1)
        lam = np.clip(_barycentric_2d(tri_px[tiny], centres), 0.0, None)
        face[lin] = tiny
        bary[lin] = lam / np.maximum(lam.sum(axis=1, keepdims=True), 1e-12)
    covered = (face >= 0).reshape(size, size)
    # nearest covered texel of every texel (the gutter's source)
    dist, (iy, ix) = ndimage.distance_transform_edt(~covered, return_indices=True)
    nearest = (iy * size + ix).ravel()
    # seam band: gutter texels near a chart take the nearest triangle, barycentric clamped
    band = np.flatnonzero(~covered.ravel() & (dist.ravel() <= seam_px))
    near_face = face[nearest[band]]
    centres = np.stack([band % size + 0.5, band // size + 0.5], axis=1)
    lam = np.clip(_barycentric_2d(tri_px[near_face], centres), 0.0, None)
    lam /= np.maximum(lam.sum(axis=1, keepdims=True), 1e-12)
    face[band] = near_face
    bary[band] = lam
    defined = face >= 0
    chart = np.where(defined, atlas.chart[np.maximum(face, 0)], -1)
    corner_xyz = vertices[atlas.vmapping][atlas.faces].astype(np.float32)  # (f, 3, 3)
    lin_def = np.flatnonzero(defined)
    # the surface point of every defined texel, once
    pos = np.zeros((size * size, 3), dtype=np.float32)
    pos[lin_def] = np.einsum("nc,ncd->nd", bary[lin_def], corner_xyz[face[lin_def]])

    def sample(lin: np.ndarray) -> np.ndarray:
        return np.asarray(color_fn(pos[lin].astype(np.float64)), dtype=np.float32)

    color = np.zeros((size * size, 3), dtype=np.float32)
    ty, tx = np.divmod(lin_def, size)
    on_grid = (ty % step == 0) & (tx % step == 0)
    direct = lin_def[on_grid]
    color[direct] = sample(direct)
    queried = len(direct)
    if step > 1:
        rest = lin_def[~on_grid]
        ty, tx = ty[~on_grid], tx[~on_grid]
        y0, x0 = ty - ty % step, tx - tx % step
        y1, x1 = y0 + step, x0 + step
        inside = (y1 < size) & (x1 < size)
        y1, x1 = np.minimum(y1, size - 1), np.minimum(x1, size - 1)
        c00, c01, c10, c11 = y0 * size + x0, y0 * size + x1, y1 * size + x0, y1 * size + x1
        own = chart[rest]
        same = inside & (chart[c00] == own) & (chart[c01] == own) & (chart[c10] == own) & (chart[c11] == own)
        cand = np.flatnonzero(same)
        rest, c00, c01, c10, c11 = rest[cand], c00[cand], c01[cand], c10[cand], c11[cand]
        fy = ((ty[cand] - y0[cand]) / step).astype(np.float32)[:, None]
        fx = ((tx[cand] - x0[cand]) / step).astype(np.float32)[:, None]
        w00, w01, w10, w11 = (1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx
        # the blend must also be right in 3D: where the surface folds or a chart is notched,
        # the bilinear blend of the corner positions strays from the texel's own point
        p00, p01, p10, p11 = pos[c00], pos[c01], pos[c10], pos[c11]
        blend = p00 * w00 + p01 * w01 + p10 * w10 + p11 * w11
        spread = np.linalg.norm(p11 - p00, axis=1) + np.linalg.norm(p10 - p01, axis=1)
        ok = np.linalg.norm(blend - pos[rest], axis=1) <= 0.1 * spread + 1e-12
        color[rest[ok]] = (
            color[c00[ok]] * w00[ok]
            + color[c01[ok]] * w01[ok]
            + color[c10[ok]] * w10[ok]
            + color[c11[ok]] * w11[ok]
        )
        done = np.zeros(size * size, dtype=bool)
        done[direct] = True
        done[rest[ok]] = True
        alone = lin_def[~done[lin_def]]
        color[alone] = sample(alone)
        queried += len(alone)
    # the rest of the gutter copies its nearest covered texel
    gutter = np.flatnonzero(~defined)
    color[gutter] = color[nearest[gutter]]
    image8 = np.clip(np.rint(color * 255.0), 0, 255).astype(np.uint8).reshape(size, size, 3)
    return BakeResult(image=np.ascontiguousarray(image8[::-1]), coverage=coverage, queried=queried)


def textured_mesh(
    mesh: trimesh.Trimesh, atlas: UVAtlas, image: np.ndarray, *, metallic: float = 0.0, roughness: float = 0.9
) -> trimesh.Trimesh:
    """The mesh split along the atlas seams with UVs and a PBR metallic-roughness material.

    Parameters
    ----------
    mesh
        (v, 3) vertices; faces in the atlas's face order.
    atlas
        Its `UVAtlas`.
    image
        (h, w, 3) uint8 base-colour texture, row 0 at the top.

    Returns
    -------
    trimesh.Trimesh with `TextureVisuals` (uv (m, 2), `PBRMaterial` with `baseColorTexture`).
    """
    from PIL import Image

    material = trimesh.visual.material.PBRMaterial(
        name="baked",
        baseColorTexture=Image.fromarray(np.asarray(image, dtype=np.uint8), mode="RGB"),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=float(metallic),
        roughnessFactor=float(roughness),
        doubleSided=False,
    )
    out = trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices)[atlas.vmapping],
        faces=atlas.faces,
        visual=trimesh.visual.TextureVisuals(uv=atlas.uv, material=material),
        process=False,
    )
    return out
