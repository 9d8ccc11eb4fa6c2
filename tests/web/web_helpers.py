"""Helpers of the review-app suite: a catalogue made by ``asset3d convert``, credentials, bucket checks."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Converted:
    """A catalogue and its buckets, made by the real convert command.

    Attributes
    ----------
    url
        The catalogue URL.
    out, photos
        The destination bucket (a folder) and the folder the photos were converted from.
    ids
        Asset ids by SKU (``chair``, ``teapot``, ``cerebro``).
    """

    url: str
    out: Path
    photos: Path
    ids: dict[str, int]

    def folder(self, sku: str) -> Path:
        """The asset folder (``{out}/{sku}/{conversion_key}``) of a SKU's asset."""
        (folder,) = (self.out / sku).iterdir()
        return folder


def convert_photos(shared: Path, root: Path, url: str, config: Path, names: tuple[str, ...]) -> Converted:
    """Convert ``names`` from the shared photos (plus a corrupt PNG) with `asset3d convert`."""
    from asset3d.cli import main
    from storage.catalogue import Catalogue

    photos, out = root / "photos", root / "out"
    photos.mkdir()
    for name in names:
        shutil.copyfile(shared / "photos" / name, photos / name)
    (photos / "broken.png").write_bytes((shared / "photos" / "chair.png").read_bytes()[:2000])
    argv = ["convert", *(str(photos / n) for n in (*names, "broken.png")), "--out", str(out), "--catalogue-url", url,
            "--config", str(config)]  # fmt: skip
    assert main(argv) == 2  # the corrupt photo fails, the others are held for review
    cat = Catalogue(url)
    try:
        ids = {}
        for name in names:
            sku = Path(name).stem
            (asset,) = cat.sku_history(sku)
            assert asset.status.value == "needs_review", (sku, asset.status)
            ids[sku] = asset.id
    finally:
        cat.close()
    return Converted(url, out, photos, ids)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(name: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


def manifest_of(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def assert_manifest_matches(folder: Path) -> dict[str, Any]:
    """The manifest exists and every file it lists is stored with that SHA-256."""
    doc = manifest_of(folder)
    assert doc is not None, f"no manifest in {folder}"
    keys = {f["key"] for f in doc["files"]}
    assert "model.glb" in keys
    for f in doc["files"]:
        assert hashlib.sha256((folder / f["key"]).read_bytes()).hexdigest() == f["sha256"], f["key"]
    return doc


def status_of(url: str, asset_id: int) -> str:
    from storage.catalogue import Catalogue

    cat = Catalogue(url)
    try:
        return cat.get_asset(asset_id).status.value
    finally:
        cat.close()


def reviews_of(url: str, asset_id: int) -> list[Any]:
    from storage.catalogue import Catalogue

    cat = Catalogue(url)
    try:
        return list(cat.asset_detail(asset_id).reviews)
    finally:
        cat.close()
