"""GLB writing (trimesh exports, pygltflib finishes) and reading back what the file holds.

trimesh writes geometry, vertex colours or the textured PBR material, and optionally Draco
(KHR_draco_mesh_compression via DracoPy). pygltflib then adds the provenance metadata to
`asset.extras` and the scene's extras, sets `bufferView.target`, re-encodes textures as
JPEG or WebP (EXT_texture_webp) on request, gives every primitive its explicit
metallic-roughness material (`meshing.materials.MaterialSpec`, with the
occlusion-roughness-metallic map where asked), and on request compresses the geometry's
bufferViews with meshoptimizer's codecs (EXT_meshopt_compression, required, with a fallback
buffer that holds no data). `inspect_glb` reads a written file back and `check_limits` holds it against a
preset.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import meshoptimizer
import numpy as np
import pygltflib
import trimesh
from PIL import Image

from meshing.errors import MeshingError
from meshing.materials import MaterialSpec, constant_orm_image
from meshing.presets import Preset

ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
MESHOPT = "EXT_meshopt_compression"
WEBP = "EXT_texture_webp"
TEXTURE_FORMATS = ("png", "jpeg", "webp")
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
GENERATOR = "asset3d meshing"
DEFAULT_MATERIAL = MaterialSpec(roughness=0.9)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _repack(gltf: pygltflib.GLTF2, replace: Mapping[int, bytes]) -> None:
    """Rebuild the single binary buffer, replacing the bytes of some bufferViews."""
    blob = gltf.binary_blob() or b""
    out = bytearray()
    for i, view in enumerate(gltf.bufferViews):
        data = replace.get(i)
        if data is None:
            start = view.byteOffset or 0
            data = blob[start : start + view.byteLength]
        pad = _align4(len(out)) - len(out)
        out.extend(b"\x00" * pad)
        view.byteOffset = len(out)
        view.byteLength = len(data)
        view.buffer = 0
        out.extend(data)
    out.extend(b"\x00" * (_align4(len(out)) - len(out)))
    gltf.buffers = [pygltflib.Buffer(byteLength=len(out))]
    gltf.set_binary_blob(bytes(out))


def _set_targets(gltf: pygltflib.GLTF2) -> None:
    """bufferView.target for vertex attributes and indices (the validator hints otherwise)."""
    for mesh in gltf.meshes:
        for prim in mesh.primitives:
            attrs = {k: v for k, v in vars(prim.attributes).items() if isinstance(v, int)}
            for acc_index in attrs.values():
                view = gltf.accessors[acc_index].bufferView
                if view is not None and gltf.bufferViews[view].byteStride in (None, 0):
                    gltf.bufferViews[view].target = ARRAY_BUFFER
            if prim.indices is not None:
                view = gltf.accessors[prim.indices].bufferView
                if view is not None:
                    gltf.bufferViews[view].target = ELEMENT_ARRAY_BUFFER


def safe_vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Unit vertex normals (area-weighted); where they cancel out, the first adjacent face's normal.

    Returns
    -------
    (v, 3) float, every row of unit length (glTF requires it).
    """
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64).copy()
    length = np.linalg.norm(normals, axis=1)
    bad = ~(length > 0.5)
    if bad.any():
        face_normals = np.asarray(mesh.face_normals, dtype=np.float64)
        first_face = np.full(len(mesh.vertices), -1, dtype=np.int64)
        corners = np.asarray(mesh.faces).ravel()
        first_face[corners[::-1]] = np.repeat(np.arange(len(mesh.faces)), 3)[::-1]
        for v in np.flatnonzero(bad):
            n = face_normals[first_face[v]] if first_face[v] >= 0 else np.zeros(3)
            normals[v] = n if np.linalg.norm(n) > 0.5 else (0.0, 1.0, 0.0)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True)


def _encode_image(image: Image.Image, fmt: str, *, jpeg_quality: int, png_level: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpeg":
        image.save(buf, format="JPEG", quality=int(jpeg_quality), subsampling=0)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=int(jpeg_quality), method=4)
    else:
        image.save(buf, format="PNG", compress_level=int(png_level))
    return buf.getvalue()


def _apply_material(
    gltf: pygltflib.GLTF2,
    spec: MaterialSpec,
    replace: dict[int, bytes],
    *,
    orm_size: int | None,
    png_level: int,
) -> None:
    """Every primitive gets a metallic-roughness material following `spec` (one is made where none is)."""
    orm_texture = None
    if spec.orm_texture:
        if orm_size is None:
            raise MeshingError("bad_input", "an occlusion-roughness-metallic map needs a textured mesh (UVs)")
        image = Image.fromarray(constant_orm_image(orm_size), mode="RGB")
        gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=0, byteLength=0))
        replace[len(gltf.bufferViews) - 1] = _encode_image(image, "png", jpeg_quality=0, png_level=png_level)
        gltf.images.append(
            pygltflib.Image(bufferView=len(gltf.bufferViews) - 1, mimeType="image/png", name="orm")
        )
        base_sampler = gltf.textures[0].sampler if gltf.textures else None
        gltf.textures.append(pygltflib.Texture(source=len(gltf.images) - 1, sampler=base_sampler))
        orm_texture = len(gltf.textures) - 1
    used: set[int] = set()
    for mesh in gltf.meshes:
        for prim in mesh.primitives:
            if prim.material is None:
                gltf.materials.append(
                    pygltflib.Material(
                        name="asset",
                        pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
                            baseColorFactor=[1.0, 1.0, 1.0, 1.0]
                        ),
                    )
                )
                prim.material = len(gltf.materials) - 1
            used.add(prim.material)
    for index in sorted(used):
        material = gltf.materials[index]
        if material.pbrMetallicRoughness is None:
            material.pbrMetallicRoughness = pygltflib.PbrMetallicRoughness(
                baseColorFactor=[1.0, 1.0, 1.0, 1.0]
            )
        pbr = material.pbrMetallicRoughness
        pbr.metallicFactor = float(spec.metallic)
        pbr.roughnessFactor = float(spec.roughness)
        material.doubleSided = bool(spec.double_sided)
        if orm_texture is not None:
            pbr.metallicRoughnessTexture = pygltflib.TextureInfo(index=orm_texture, texCoord=0)
            material.occlusionTexture = pygltflib.OcclusionTextureInfo(
                index=orm_texture, texCoord=0, strength=1.0
            )


def _glb_bytes(gltf: pygltflib.GLTF2) -> bytes:
    """GLB container of the document as it is (pygltflib's writer merges all buffers into one,
    which would point a meshopt fallback buffer's views at the binary chunk)."""
    doc = gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
    doc += b" " * (_align4(len(doc)) - len(doc))
    blob = gltf.binary_blob() or b""
    blob += b"\x00" * (_align4(len(blob)) - len(blob))
    length = 12 + 8 + len(doc) + (8 + len(blob) if blob else 0)
    out = [b"glTF", struct.pack("<II", 2, length), struct.pack("<I", len(doc)), b"JSON", doc]
    if blob:
        out += [struct.pack("<I", len(blob)), b"BIN\x00", blob]
    return b"".join(out)


def _add_extension(gltf: pygltflib.GLTF2, name: str, *, required: bool) -> None:
    gltf.extensionsUsed = sorted({*(gltf.extensionsUsed or []), name})
    if required:
        gltf.extensionsRequired = sorted({*(gltf.extensionsRequired or []), name})


def _cache_friendly(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The same mesh with triangles in vertex-cache order and vertices in first-use order.

    meshoptimizer's codecs compress best on data ordered for locality (non-normative advice of
    the EXT_meshopt_compression specification); geometry, UVs and colours are unchanged.
    """
    faces = np.ascontiguousarray(mesh.faces, dtype=np.uint32).ravel()  # (3f,)
    ordered = np.empty_like(faces)
    meshoptimizer.optimize_vertex_cache(ordered, faces, len(faces), len(mesh.vertices))
    used, first = np.unique(ordered, return_index=True)
    order = used[np.argsort(first)]  # vertices by first use
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    new_faces = remap[ordered.astype(np.int64)].reshape(-1, 3)
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture":
        new_visual: Any = trimesh.visual.TextureVisuals(
            uv=np.asarray(visual.uv)[order], material=visual.material
        )
    elif getattr(visual, "kind", None) == "vertex":
        new_visual = trimesh.visual.ColorVisuals(vertex_colors=np.asarray(visual.vertex_colors)[order])
    else:
        new_visual = None
    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices)[order], faces=new_faces, visual=new_visual, process=False
    )


def _meshopt_compress(gltf: pygltflib.GLTF2) -> int:
    """Compress every vertex-attribute and index bufferView with EXT_meshopt_compression.

    Attributes use the attribute codec (version 0, as the extension requires) and triangle
    indices the triangle codec (version 1); the parent bufferViews move to a fallback buffer
    without data, so the extension is required. Returns the number of views compressed.
    """
    views: dict[int, tuple[str, int, int]] = {}  # view -> (mode, byteStride, count)
    for mesh in gltf.meshes:
        for prim in mesh.primitives:
            attrs = {k: v for k, v in vars(prim.attributes).items() if isinstance(v, int)}
            for acc_index in attrs.values():
                acc = gltf.accessors[acc_index]
                stride = _COMPONENT_BYTES[acc.componentType] * _TYPE_COMPONENTS[acc.type]
                if acc.bufferView is not None and stride % 4 == 0 and stride <= 256 and not acc.byteOffset:
                    views[acc.bufferView] = ("ATTRIBUTES", stride, acc.count)
            if prim.indices is not None and prim.mode in (None, 4):
                acc = gltf.accessors[prim.indices]
                if acc.bufferView is not None and acc.componentType in (5123, 5125) and not acc.byteOffset:
                    views[acc.bufferView] = ("TRIANGLES", _COMPONENT_BYTES[acc.componentType], acc.count)
    if not views:
        return 0
    meshoptimizer.encode_vertex_version(0)
    meshoptimizer.encode_index_version(1)
    blob = gltf.binary_blob() or b""
    out = bytearray()
    fallback = 0
    for i, view in enumerate(gltf.bufferViews):
        start = view.byteOffset or 0
        data = blob[start : start + view.byteLength]
        out.extend(b"\x00" * (_align4(len(out)) - len(out)))
        if i not in views:
            view.byteOffset, view.buffer = len(out), 0
            out.extend(data)
            continue
        mode, stride, count = views[i]
        if view.byteLength != stride * count:
            raise MeshingError(
                "bad_input", f"bufferView {i}: {view.byteLength} B is not {count} x {stride} B"
            )
        if mode == "ATTRIBUTES":
            elements = np.frombuffer(data, dtype=np.uint8).reshape(count, stride)
            packed = meshoptimizer.encode_vertex_buffer(elements, count, stride)
        else:
            indices = np.frombuffer(data, dtype=np.uint16 if stride == 2 else np.uint32).astype(np.uint32)
            packed = meshoptimizer.encode_index_buffer(indices, count, int(indices.max()) + 1 if count else 0)
        view.extensions = {
            **(view.extensions or {}),
            MESHOPT: {
                "buffer": 0,
                "byteOffset": len(out),
                "byteLength": len(packed),
                "byteStride": stride,
                "count": count,
                "mode": mode,
            },
        }
        out.extend(packed)
        view.buffer, view.byteOffset = 1, fallback
        fallback = _align4(fallback + view.byteLength)
    out.extend(b"\x00" * (_align4(len(out)) - len(out)))
    gltf.buffers = [
        pygltflib.Buffer(byteLength=len(out)),
        pygltflib.Buffer(byteLength=fallback, extensions={MESHOPT: {"fallback": True}}),
    ]
    gltf.set_binary_blob(bytes(out))
    _add_extension(gltf, MESHOPT, required=True)
    return len(views)


def export_glb(
    mesh: trimesh.Trimesh,
    *,
    metadata: Mapping[str, Any] | None = None,
    draco: bool = False,
    meshopt: bool = False,
    texture_format: str = "png",
    jpeg_quality: int = 92,
    png_level: int = 3,
    material: MaterialSpec = DEFAULT_MATERIAL,
) -> bytes:
    """Encode a mesh (vertex colours or a textured PBR material) as GLB bytes.

    Parameters
    ----------
    mesh
        Mesh in the asset frame (y-up, metres).
    metadata
        JSON-serialisable provenance stored in `asset.extras` and `scenes[0].extras`.
    draco
        Compress geometry with KHR_draco_mesh_compression.
    meshopt
        Compress geometry with EXT_meshopt_compression (triangles reordered for locality first);
        not together with Draco.
    texture_format
        `png`, `jpeg` or `webp` (EXT_texture_webp, required) for the base-colour texture.
    jpeg_quality, png_level
        Encoder settings (JPEG without chroma subsampling, and WebP: quality; zlib level for PNG).
    material
        The metallic-roughness material of every primitive (one is added to vertex-colour meshes);
        its occlusion-roughness-metallic map, when asked, has the base-colour texture's size.

    Returns
    -------
    bytes of a GLB file.
    """
    if texture_format not in TEXTURE_FORMATS:
        raise MeshingError(
            "bad_input", f"texture_format={texture_format!r}: expected one of {TEXTURE_FORMATS}"
        )
    if draco and meshopt:
        raise MeshingError("bad_input", "Draco and meshopt both compress the geometry: choose one")
    extras = json.loads(json.dumps(dict(metadata or {}), default=str))
    mesh = _cache_friendly(mesh) if meshopt else mesh.copy()
    mesh.vertex_normals = safe_vertex_normals(mesh)
    # the texture is encoded here (trimesh would always use slow default-level PNG): trimesh
    # writes the material around a 1x1 stand-in whose bytes are then replaced
    texture = None
    visual_material = (
        getattr(mesh.visual, "material", None) if getattr(mesh.visual, "kind", None) == "texture" else None
    )
    if (
        isinstance(visual_material, trimesh.visual.material.PBRMaterial)
        and visual_material.baseColorTexture is not None
    ):
        texture = visual_material.baseColorTexture.convert("RGB")
        stand_in = visual_material.copy()
        stand_in.baseColorTexture = Image.new("RGB", (1, 1))
        mesh.visual = trimesh.visual.TextureVisuals(uv=mesh.visual.uv, material=stand_in)
    scene = trimesh.Scene()
    scene.add_geometry(mesh, geom_name="asset", node_name="asset")
    kwargs: dict[str, Any] = {"include_normals": True}
    if draco:
        kwargs["extension_draco"] = True
    try:
        raw = trimesh.exchange.gltf.export_glb(scene, **kwargs)
    except TypeError as exc:  # an older trimesh without the Draco exporter
        raise MeshingError("bad_input", f"this trimesh cannot write Draco: {exc}") from exc
    gltf = pygltflib.GLTF2.load_from_bytes(raw)
    if draco and "KHR_draco_mesh_compression" not in (gltf.extensionsUsed or []):
        raise MeshingError(
            "bad_input", "Draco compression was requested but DracoPy is not installed or failed"
        )
    replace: dict[int, bytes] = {}
    if texture is not None:
        if len(gltf.images) != 1 or gltf.images[0].bufferView is None:
            raise MeshingError(
                "bad_input", f"expected one embedded texture, trimesh wrote {len(gltf.images)}"
            )
        replace[gltf.images[0].bufferView] = _encode_image(
            texture, texture_format, jpeg_quality=jpeg_quality, png_level=png_level
        )
        gltf.images[0].mimeType = f"image/{texture_format}"
        if texture_format == "webp":  # core glTF knows PNG and JPEG only: the extension names the source
            for tex in gltf.textures:
                if tex.source == 0:
                    tex.extensions = {**(tex.extensions or {}), WEBP: {"source": 0}}
                    tex.source = None
            _add_extension(gltf, WEBP, required=True)
    _apply_material(
        gltf, material, replace, orm_size=texture.width if texture is not None else None, png_level=png_level
    )
    _repack(gltf, replace)
    _set_targets(gltf)
    for accessor in gltf.accessors:  # Draco placeholders: no bufferView, so no byteOffset either
        if accessor.bufferView is None:
            accessor.byteOffset = None
    if meshopt:
        _meshopt_compress(gltf)  # last: the extras and names above live in JSON only
    gltf.asset.generator = GENERATOR
    gltf.asset.extras = extras
    if gltf.scenes:
        gltf.scenes[0].extras = extras
    return _glb_bytes(gltf) if meshopt else b"".join(gltf.save_to_bytes())


def write_glb(mesh: trimesh.Trimesh, path: str | Path, **kwargs: Any) -> Path:
    """`export_glb` to a file (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export_glb(mesh, **kwargs))
    return path


def read_glb_mesh(path: str | Path) -> trimesh.Trimesh:
    """A written asset read back as one mesh in world space, colours kept.

    `trimesh.load(..., force="mesh")` drops COLOR_0 when a primitive also has a material (it
    keeps them as a vertex attribute of a texture visual, which concatenation loses); here the
    colours come back as vertex colours, and a base-colour texture as a texture visual.

    Raises
    ------
    MeshingError
        `bad_input` when the file holds no triangle mesh.
    """
    scene = trimesh.load(Path(path), force="scene", process=False)
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if not isinstance(geom, trimesh.Trimesh):
            continue
        colors = None
        visual = geom.visual
        if isinstance(visual, trimesh.visual.TextureVisuals) and "color" in visual.vertex_attributes:
            if getattr(visual.material, "baseColorTexture", None) is None:
                colors = np.asarray(visual.vertex_attributes["color"])
        part = geom.copy()
        if colors is not None:
            part.visual = trimesh.visual.ColorVisuals(part, vertex_colors=colors)
        part.apply_transform(transform)
        parts.append(part)
    if not parts:
        raise MeshingError("bad_input", f"{path}: no triangle mesh in the file")
    return parts[0] if len(parts) == 1 else trimesh.util.concatenate(parts)


@dataclass(frozen=True)
class TextureInfo:
    width: int
    height: int
    mime_type: str


@dataclass(frozen=True)
class MaterialInfo:
    """One material as the file states it (glTF defaults filled in where a field is absent)."""

    name: str | None
    metallic: float
    roughness: float
    double_sided: bool
    base_color_texture: bool
    metallic_roughness_texture: bool
    occlusion_texture: bool


@dataclass(frozen=True)
class GlbInfo:
    """What a GLB file holds, read back from its bytes.

    Attributes
    ----------
    bytes
        File size.
    triangles, vertices
        Totals over all mesh primitives drawn by the scene's nodes.
    bounds_min, bounds_max
        (3,) world-space box from the POSITION accessors' min/max (metres, y-up).
    textures
        Every image, decoded for its size.
    extensions_used, extensions_required
        As declared.
    has_vertex_colors, has_texcoords
        Any primitive with COLOR_0 / TEXCOORD_0.
    extras
        `asset.extras`.
    materials
        The material of every drawn primitive, in order (None for a primitive without one).
    """

    bytes: int
    triangles: int
    vertices: int
    bounds_min: list[float]
    bounds_max: list[float]
    textures: list[TextureInfo] = field(default_factory=list)
    extensions_used: list[str] = field(default_factory=list)
    extensions_required: list[str] = field(default_factory=list)
    has_vertex_colors: bool = False
    has_texcoords: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    materials: list[MaterialInfo | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _node_matrix(node: pygltflib.Node) -> np.ndarray:
    if node.matrix:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T  # column-major in glTF
    m = np.eye(4)
    if node.scale:
        m = m @ np.diag([*node.scale, 1.0])
    if node.rotation:
        x, y, z, w = node.rotation
        r = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        rm = np.eye(4)
        rm[:3, :3] = r
        m = rm @ m
    if node.translation:
        t = np.eye(4)
        t[:3, 3] = node.translation
        m = t @ m
    return m


def inspect_glb(path: str | Path) -> GlbInfo:
    """Read a GLB back: size, triangles, bounds, textures, extensions, extras.

    Raises
    ------
    MeshingError
        `bad_input` when the file is missing or not a GLB pygltflib can parse.
    """
    path = Path(path)
    if not path.is_file():
        raise MeshingError("bad_input", f"{path}: no such GLB file")
    try:
        gltf = pygltflib.GLTF2.load_binary(str(path))
    except Exception as exc:  # pygltflib raises assorted errors on malformed files
        raise MeshingError("bad_input", f"{path}: not a readable GLB ({exc})") from exc
    blob = gltf.binary_blob() or b""
    triangles = vertices = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    colors = texcoords = False
    materials: list[MaterialInfo | None] = []

    def material_info(index: int | None) -> MaterialInfo | None:
        if index is None:
            return None
        m = gltf.materials[index]
        pbr = m.pbrMetallicRoughness or pygltflib.PbrMetallicRoughness()
        return MaterialInfo(
            name=m.name,
            metallic=1.0 if pbr.metallicFactor is None else float(pbr.metallicFactor),
            roughness=1.0 if pbr.roughnessFactor is None else float(pbr.roughnessFactor),
            double_sided=bool(m.doubleSided),
            base_color_texture=pbr.baseColorTexture is not None,
            metallic_roughness_texture=pbr.metallicRoughnessTexture is not None,
            occlusion_texture=m.occlusionTexture is not None,
        )

    def visit(index: int, parent: np.ndarray) -> None:
        nonlocal triangles, vertices, colors, texcoords
        node = gltf.nodes[index]
        world = parent @ _node_matrix(node)
        if node.mesh is not None:
            for prim in gltf.meshes[node.mesh].primitives:
                pos = gltf.accessors[prim.attributes.POSITION]
                vertices += pos.count
                if prim.mode in (None, 4):
                    n = gltf.accessors[prim.indices].count if prim.indices is not None else pos.count
                    triangles += n // 3
                materials.append(material_info(prim.material))
                colors |= prim.attributes.COLOR_0 is not None
                texcoords |= prim.attributes.TEXCOORD_0 is not None
                corners = (
                    np.array(np.meshgrid(*zip(pos.min, pos.max, strict=True), indexing="ij")).reshape(3, -1).T
                )
                placed = corners @ world[:3, :3].T + world[:3, 3]
                lo[:] = np.minimum(lo, placed.min(axis=0))
                hi[:] = np.maximum(hi, placed.max(axis=0))
        for child in node.children or []:
            visit(child, world)

    scene = gltf.scenes[gltf.scene or 0] if gltf.scenes else None
    for root in scene.nodes if scene else []:
        visit(root, np.eye(4))
    textures = []
    for image in gltf.images:
        if image.bufferView is None:
            continue
        view = gltf.bufferViews[image.bufferView]
        start = view.byteOffset or 0
        with Image.open(io.BytesIO(blob[start : start + view.byteLength])) as pil:
            textures.append(TextureInfo(width=pil.width, height=pil.height, mime_type=image.mimeType or ""))
    extras = gltf.asset.extras if isinstance(gltf.asset.extras, dict) else {}
    return GlbInfo(
        bytes=path.stat().st_size,
        triangles=int(triangles),
        vertices=int(vertices),
        bounds_min=[float(x) for x in lo],
        bounds_max=[float(x) for x in hi],
        textures=textures,
        extensions_used=list(gltf.extensionsUsed or []),
        extensions_required=list(gltf.extensionsRequired or []),
        has_vertex_colors=colors,
        has_texcoords=texcoords,
        extras=dict(extras),
        materials=materials,
    )


@dataclass(frozen=True)
class LimitsCheck:
    """A written file against a preset: `ok`, one line per broken limit, one per missed recommendation."""

    preset: str
    ok: bool
    failures: list[str]
    measured: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_limit_failures(
    preset: Preset, *, triangles: int, n_bytes: int, textures: list[tuple[int, int]], min_y: float
) -> tuple[list[str], list[str]]:
    """The limits every written file of a preset shares (GLB or USDZ): failures, then warnings.

    Triangles, file size (and the recommended size, a warning), texture sides (largest, square
    power of two) and the floor.
    """
    fail: list[str] = []
    warn: list[str] = []
    if triangles > preset.max_triangles:
        fail.append(f"triangles {triangles} > {preset.max_triangles}")
    if n_bytes > preset.max_bytes:
        fail.append(f"file size {n_bytes} B > {preset.max_bytes} B")
    if preset.target_bytes and n_bytes > preset.target_bytes:
        warn.append(f"file size {n_bytes} B > the {preset.target_bytes} B {preset.name} recommends")
    for w, h in textures:
        if preset.max_texture_size and max(w, h) > preset.max_texture_size:
            fail.append(f"texture {w}x{h} larger than {preset.max_texture_size}")
        if preset.texture_square_pow2 and (w != h or w & (w - 1)):
            fail.append(f"texture {w}x{h} is not square power-of-two")
    if preset.floor_at_zero and abs(min_y) > preset.floor_tolerance_m:
        fail.append(f"min y {min_y:.6f} m is not on the floor (|y| <= {preset.floor_tolerance_m})")
    return fail, warn


def check_limits(info: GlbInfo, preset: Preset) -> LimitsCheck:
    """Hold a written file (`inspect_glb`) against every limit the preset states."""
    fail, warn = file_limit_failures(
        preset,
        triangles=info.triangles,
        n_bytes=info.bytes,
        textures=[(t.width, t.height) for t in info.textures],
        min_y=info.bounds_min[1],
    )
    if preset.appearance == "vertex_colors" and not info.has_vertex_colors:
        fail.append("no COLOR_0 vertex colours")
    if preset.appearance == "texture" and (not info.textures or not info.has_texcoords):
        fail.append("no base-colour texture with TEXCOORD_0")
    accepted = ("image/png", "image/jpeg", *(("image/webp",) if WEBP in preset.allowed_extensions else ()))
    for t in info.textures:
        if t.mime_type not in accepted:
            fail.append(f"texture type {t.mime_type} not accepted")
    if any(m is None for m in info.materials):
        fail.append("a primitive without a material (viewers would draw it metallic)")
    if preset.orm_texture and not all(m is not None and m.metallic_roughness_texture for m in info.materials):
        fail.append("no metallic-roughness (occlusion-roughness-metallic) texture")
    for ext in sorted(set(info.extensions_used) | set(info.extensions_required)):
        if ext not in preset.allowed_extensions:
            fail.append(f"extension {ext} not accepted by {preset.name}")
    measured = {
        "triangles": info.triangles,
        "bytes": info.bytes,
        "textures": [f"{t.width}x{t.height} {t.mime_type}" for t in info.textures],
        "extensions": sorted(set(info.extensions_used)),
        "min_y_m": info.bounds_min[1],
    }
    return LimitsCheck(preset=preset.name, ok=not fail, failures=fail, measured=measured, warnings=warn)
