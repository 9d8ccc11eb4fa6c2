"""Files: an asset's GLB, previews, photo and intake images from the buckets; the vendored viewer; the
app's own stylesheet and scripts.

    GET /files/{asset_id}/model.glb          model/gltf-binary
    GET /files/{asset_id}/previews/{n}       the n-th preview the catalogue lists (PNG)
    GET /files/{asset_id}/photo              the source photo
    GET /files/{asset_id}/intake/{name}      input.png (the framed model input) or mask.png (the intake mask)
    GET /vendor/{file}                       model-viewer, the Draco decoder, the Basis transcoder (node_modules)
    GET /static/{file}                       the app's CSS and scripts

No parameter is a path: each route asks the catalogue for the URI, and `asset3d.web.files.Buckets`
refuses URIs outside the configured bucket roots (403). Asset files are cached privately for an hour
(their folder is named by the conversion key); photos are revalidated (ETag) every time.
"""

from __future__ import annotations

import re
from email.utils import format_datetime
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from asset3d.web.files import content_type_of
from asset3d.web.security import Identity
from asset3d.web.state import State, get_state, reader
from storage import ObjectNotFound
from storage.catalogue import NotFound

router = APIRouter(include_in_schema=False)
Reader = Annotated[Identity | None, Depends(reader)]

ASSET_CACHE = "private, max-age=3600"
PHOTO_CACHE = "private, no-cache"
VENDOR_CACHE = "public, max-age=86400"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".svg": "image/svg+xml"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def serve_uri(request: Request, st: State, uri: str, *, cache: str) -> Response:
    """Stream the object at ``uri`` (which must lie under a bucket root) with type, ETag and caching headers.

    Raises
    ------
    asset3d.web.files.OutsideBuckets
        403.
    storage.ObjectNotFound
        404.
    storage.StorageError
        503 (the bucket cannot be reached).
    """
    located = st.buckets.locate(uri)
    info = st.buckets.head(located)
    etag = f'"{info.etag}"'
    name = _SAFE_NAME.sub("_", PurePosixPath(located.key).name) or "file"
    headers = {
        "ETag": etag,
        "Cache-Control": cache,
        "Last-Modified": format_datetime(info.last_modified, usegmt=True),
        "Content-Disposition": f'inline; filename="{name}"',
        "X-Content-Type-Options": "nosniff",
    }
    wanted = [t.strip() for t in request.headers.get("if-none-match", "").split(",") if t.strip()]
    if etag in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(info.size)
    return StreamingResponse(st.buckets.stream(located), media_type=content_type_of(located.key), headers=headers)


@router.get("/files/{asset_id}/model.glb")
def glb(request: Request, asset_id: int, me: Reader) -> Response:
    st = get_state(request)
    a = st.catalogue().get_asset(asset_id)
    if not a.glb_uri:
        raise NotFound(f"asset {asset_id} has no GLB (it failed before one was written)")
    return serve_uri(request, st, a.glb_uri, cache=ASSET_CACHE)


@router.get("/files/{asset_id}/previews/{index}")
def preview(request: Request, asset_id: int, index: Annotated[int, Path(ge=0, le=1000)], me: Reader) -> Response:
    st = get_state(request)
    a = st.catalogue().get_asset(asset_id)
    if index >= len(a.preview_uris):
        raise NotFound(f"asset {asset_id} has {len(a.preview_uris)} previews, no preview {index}")
    return serve_uri(request, st, a.preview_uris[index], cache=ASSET_CACHE)


@router.get("/files/{asset_id}/photo")
def photo(request: Request, asset_id: int, me: Reader) -> Response:
    st = get_state(request)
    cat = st.catalogue()
    return serve_uri(request, st, cat.get_photo(cat.get_asset(asset_id).photo_id).uri, cache=PHOTO_CACHE)


@router.get("/files/{asset_id}/intake/{name}")
def intake(request: Request, asset_id: int, name: Literal["input.png", "mask.png"], me: Reader) -> Response:
    st = get_state(request)
    a = st.catalogue().get_asset(asset_id)
    if not a.glb_uri:
        raise ObjectNotFound(f"asset {asset_id} has no files", key=name)
    return serve_uri(request, st, f"{a.glb_uri.rsplit('/', 1)[0]}/intake/{name}", cache=ASSET_CACHE)


@router.get("/vendor/{name:path}")
def vendor(request: Request, name: str) -> Response:
    path = get_state(request).vendor.get(name)
    if path is None:
        raise ObjectNotFound(f"no vendored file {name!r} (run `npm ci` for the viewer)", key=name)
    return FileResponse(path, media_type=_STATIC_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": VENDOR_CACHE})  # fmt: skip


@router.get("/static/{name}")
def static(request: Request, name: str) -> Response:
    path = get_state(request).static.get(name)
    if path is None:
        raise ObjectNotFound(f"no static file {name!r}", key=name)
    return FileResponse(path, media_type=_STATIC_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={"Cache-Control": "no-cache"})  # fmt: skip
