"""What every test of the fault suite (marker ``reliability``) asserts after its fault, whatever the fault:

* nothing lost: every good photo is published exactly once, with its catalogue row (`assert_published_once`);
* nothing half-visible: every manifest in the destination lists files stored with exactly those sha256s and
  has a published catalogue asset behind it, and every published asset has its manifest (`assert_consistent`);
* no secret in anything captured: outputs, logs, catalogue rows, stored objects (`assert_no_secret`);
* the summary counts add up: one row per photo, and the counts are the rows' statuses (`assert_counts`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from storage import open_store
from storage.catalogue import AssetStatus, Catalogue

MANIFEST = "manifest.json"


def manifests(dest: str) -> dict[str, dict[str, Any]]:
    """Every manifest under ``dest``, by its asset folder's URI."""
    store = open_store(dest)
    out = {}
    for info in store.list(""):
        if info.key.endswith("/" + MANIFEST):
            folder = info.key.rsplit("/", 1)[0]
            out[store.uri_for(folder)] = json.loads(store.get(info.key))
    return out


def assert_consistent(dest: str, catalogue_url: str) -> None:
    """No manifest without its files (sha256 checked) and its published catalogue row; no published row
    without its manifest."""
    store = open_store(dest)
    found = manifests(dest)
    cat = Catalogue(catalogue_url)
    try:
        assets = cat.review_queue(statuses=list(AssetStatus), limit=None)
    finally:
        cat.close()
    published = {a.glb_uri.rsplit("/", 1)[0]: a for a in assets if a.published_at is not None and a.glb_uri}
    for folder, doc in found.items():
        prefix = folder.removeprefix(store.uri).strip("/")
        for entry in doc["files"]:
            data = store.get(f"{prefix}/{entry['key']}")
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{folder}/{entry['key']}: not what the manifest says"
        assert folder in published, f"{folder}: a manifest without a published catalogue asset"
        asset = published[folder]
        assert asset.status in (AssetStatus.auto_approved, AssetStatus.approved)
        assert doc["provenance"]["asset_id"] == asset.id, f"{folder}: the manifest names another row"
    missing = sorted(set(published) - set(found))
    assert not missing, f"published in the catalogue without a manifest: {missing}"


def assert_published_once(dest: str, catalogue_url: str, photo_uris: Iterable[str]) -> None:
    """Each photo has exactly one published asset (and so one manifest, `assert_consistent`)."""
    cat = Catalogue(catalogue_url)
    try:
        known = cat.photos_by_uri(photo_uris)
        for uri in photo_uris:
            assert uri in known, f"{uri}: no catalogue row"
            assets = [a for a in cat.sku_history(known[uri].sku) if a.photo_id == known[uri].id]
            published = [a for a in assets if a.published_at is not None]
            assert len(published) == 1, f"{uri}: {len(published)} published assets ({[a.status.value for a in assets]})"
    finally:
        cat.close()
    assert_consistent(dest, catalogue_url)


def assert_counts(report: Mapping[str, Any], photos: int | None = None) -> None:
    """One row per photo, and the counts are exactly the rows' statuses."""
    rows = report["photos"]
    if photos is not None:
        assert len(rows) == photos, f"{len(rows)} rows for {photos} photos"
    assert len({r["uri"] for r in rows}) == len(rows), "a photo counted twice"
    by_status = Counter(r["status"] for r in rows)
    assert {k: v for k, v in report["counts"].items() if v} == dict(by_status)
    assert all(r["status"] != "pending" for r in rows), "a photo without an outcome"


def assert_no_secret(secrets: Sequence[str], *, texts: Iterable[str] = (), catalogue_url: str | None = None, dest: str | None = None) -> None:
    """None of ``secrets`` in the captured ``texts``, the catalogue's rows (failures, runs, assets), or the
    objects under ``dest``."""
    haystacks: list[tuple[str, str]] = [(f"captured text {i}", t) for i, t in enumerate(texts)]
    if catalogue_url is not None:
        from sqlalchemy import create_engine, inspect, text

        engine = create_engine(catalogue_url)
        try:
            with engine.connect() as conn:
                for table in inspect(conn).get_table_names():
                    for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                        haystacks.append((f"catalogue table {table}", json.dumps([str(v) for v in row])))
        finally:
            engine.dispose()
    if dest is not None:
        store = open_store(dest)
        for info in store.list(""):
            if info.key.endswith((".json", ".txt")):
                haystacks.append((f"object {info.key}", store.get(info.key).decode("utf-8", "replace")))
    for secret in secrets:
        for where, text_ in haystacks:
            assert secret not in text_, f"secret found in {where}"
