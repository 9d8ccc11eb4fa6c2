"""Publishing an asset to a bucket, and taking it back.

Layout of an asset (the conversion key is the SHA-256 of the photo's bytes, the conversion parameters and
the weights, so a folder names exactly one conversion)::

    {dest}/{sku}/{conversion_key}/model.glb            the channel files (model.usdz too for apple)
    {dest}/{sku}/{conversion_key}/previews/...         turntable PNGs and the contact sheet
    {dest}/{sku}/{conversion_key}/intake/...           the framed model input and its mask
    {dest}/{sku}/{conversion_key}/metrics.json         metrics, the gate's verdict, intake summary
    {dest}/{sku}/{conversion_key}/manifest.json        written last: consumers see an asset only once it exists

The protocol, in order (the driver and reviewers' approvals both follow it):

1. `stage`: every file, each skipped when the stored SHA-256 already matches (re-staging writes nothing);
2. the catalogue row (the caller: `asset3d.pipeline.records`);
3. `release`: checks that every listed file is stored with its SHA-256, then writes ``manifest.json``
   ``{"files": [{"key", "sha256", "bytes", "content_type"}], "provenance": {...}}`` (keys relative to the
   folder). A manifest that lists the same files is left as it is.

`withdraw` deletes the manifest first (the files stay for the reviewer): no consumer reads a manifest for
an asset that is no longer approved.

Each function opens the asset folder as a store of its own (`open_folder`): a local folder must resolve
inside its destination, so a SKU folder that is a symlink out of it takes no write anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from asset3d.pipeline.errors import StageError
from asset3d.pipeline.vocabulary import Stage
from storage import InvalidKey, ObjectNotFound, StorageError, open_store
from storage.local import LocalStore
from storage.objects import ObjectStore

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """One file of an asset as its manifest lists it (``key`` relative to the asset folder)."""

    key: str
    sha256: str
    bytes: int
    content_type: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Staged:
    """An asset's files in the destination: its folder URI and what was written."""

    folder: str
    files: tuple[FileEntry, ...]
    written: int
    unchanged: int

    def uri(self, key: str) -> str:
        return f"{self.folder}/{key}"

    @property
    def glb_uri(self) -> str:
        return self.uri("model.glb")

    @property
    def preview_uris(self) -> tuple[str, ...]:
        return tuple(self.uri(f.key) for f in self.files if f.key.startswith("previews/"))


def asset_folder(dest: str, sku: str, conversion_key: str) -> str:
    """The URI of an asset's folder in ``dest``."""
    return open_store(dest).uri_for(f"{sku}/{conversion_key}")


def open_folder(folder: str) -> ObjectStore:
    """The store of the asset folder ``folder`` (``{dest}/{sku}/{conversion_key}``).

    A local store resolves its root's symlinks, so a SKU or asset folder that is a link would root the
    asset's store out of the destination, past the store's own check that keys stay under its root.

    Raises
    ------
    storage.InvalidKey
        ``reason="outside_root"``: a local folder that resolves outside its destination's folder.
    """
    store = open_store(folder)
    if isinstance(store, LocalStore):
        dest = open_store(folder.rstrip("/").rsplit("/", 2)[0])
        if isinstance(dest, LocalStore) and (store.root == dest.root or not store.root.is_relative_to(dest.root)):
            raise InvalidKey(
                f"asset folder {folder} refused: resolves to {store.root}, outside its destination {dest.root} (a symlink)",
                reason="outside_root", key=folder,
            )  # fmt: skip
    return store


def folder_of(glb_uri: str) -> str:
    """The asset folder a GLB URI lies in."""
    return glb_uri.rsplit("/", 1)[0]


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()


def stage(folder: str, files: Sequence[tuple[str, bytes, str]], *, metadata: Mapping[str, str]) -> Staged:
    """Write ``files`` (``(key, data, content_type)``) under ``folder``; no manifest.

    Raises
    ------
    storage.StorageError
        Any storage failure (``transient`` says whether to retry; a retry resumes where it stopped).
    """
    import hashlib

    store = open_folder(folder)
    written = unchanged = 0
    entries = []
    for key, data, content_type in files:
        sha = hashlib.sha256(data).hexdigest()
        entries.append(FileEntry(key, sha, len(data), content_type))
        try:
            same = store.head(key).sha256 == sha
        except ObjectNotFound:
            same = False
        if same:
            unchanged += 1
            continue
        store.put(key, data, content_type=content_type, metadata=dict(metadata))
        written += 1
    return Staged(store.uri, tuple(entries), written, unchanged)


def stored_files(store: ObjectStore) -> tuple[FileEntry, ...]:
    """The files of an asset folder as stored (every object but the manifest), with their SHA-256."""
    out = []
    for info in store.list(""):
        if info.key == MANIFEST:
            continue
        head = store.head(info.key)
        if head.sha256 is None:
            raise StageError(Stage.publish, "object_unverifiable", f"{store.uri_for(info.key)}: stored without a SHA-256")
        out.append(FileEntry(info.key, head.sha256, head.size, head.content_type or "application/octet-stream"))
    return tuple(out)


def release(folder: str, provenance: Mapping[str, Any], files: Sequence[FileEntry] | None = None) -> str:
    """Write the manifest of the asset in ``folder`` after checking its files; returns the manifest's URI.

    Parameters
    ----------
    files
        What the manifest lists (default: every file stored in the folder). Each must be stored with
        exactly that SHA-256.

    Raises
    ------
    StageError
        ``publish/object_missing`` or ``publish/object_mismatch`` (a file is not what the manifest would
        promise) and nothing is written; storage errors pass through.
    """
    store = open_folder(folder)
    entries = tuple(files) if files is not None else stored_files(store)
    if not any(e.key == "model.glb" for e in entries):
        raise StageError(Stage.publish, "object_missing", f"{store.uri_for('model.glb')}: no GLB to publish")
    for e in entries:
        try:
            stored = store.head(e.key).sha256
        except ObjectNotFound:
            raise StageError(Stage.publish, "object_missing", f"{store.uri_for(e.key)}: not stored, nothing published") from None
        if stored != e.sha256:
            raise StageError(
                Stage.publish, "object_mismatch",
                f"{store.uri_for(e.key)}: stored sha256 {str(stored)[:12]} is not the asset's {e.sha256[:12]}, nothing published",
            )  # fmt: skip
    doc = {"files": [e.as_dict() for e in entries], "provenance": dict(provenance)}
    try:
        current = json.loads(store.get(MANIFEST, max_bytes=4 << 20))
    except (ObjectNotFound, ValueError):
        current = None
    if not (isinstance(current, dict) and current.get("files") == doc["files"]):
        store.put(MANIFEST, _json_bytes(doc), content_type="application/json")
    return store.uri_for(MANIFEST)


def withdraw(folder: str) -> bool:
    """Delete the manifest of the asset in ``folder`` (the files stay); True when there was one.

    Raises
    ------
    storage.StorageError
        The manifest could not be deleted (it is still there: nothing else may change).
    """
    store = open_folder(folder)
    existed = store.exists(MANIFEST)
    if existed:
        store.delete(MANIFEST)
    return existed


def is_released(folder: str) -> bool:
    """True when the asset in ``folder`` has a manifest (consumers can see it)."""
    try:
        return open_folder(folder).exists(MANIFEST)
    except StorageError:
        return False
