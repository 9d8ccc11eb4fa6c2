"""Review decisions act on the bucket: an approval publishes (files checked, manifest last, one catalogue
transaction), a rejection takes the manifest back first, a failed publish changes nothing, and a new
version of a published photo does not replace it until it is approved itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import S3FaultProxy

from asset3d.cli.convert import convert_local
from asset3d.pipeline.review import decide
from asset3d.pipeline.settings import load_settings
from storage import PermanentStorageError, open_store
from storage.catalogue import AssetStatus, Catalogue, TransitionRefused

#: Holds every asset for a person: nothing reaches the gate's approval line.
HOLD = {"approve_min_silhouette_iou": 1.01}


def _convert(photo: Path, dest: str, url: str, options: dict[str, Any], **overrides: Any) -> Any:
    settings = load_settings(**{**options, **overrides, "dest": dest, "catalogue_url": url})
    summary = convert_local([{"uri": photo.as_uri(), "sku": "SKU-1"}], settings)
    (outcome,) = summary.outcomes
    return outcome


def _manifest(glb_uri: str) -> dict[str, Any] | None:
    folder = open_store(glb_uri.rsplit("/", 1)[0])
    if not folder.exists("manifest.json"):
        return None
    return json.loads(folder.get("manifest.json"))


@pytest.fixture
def photo(tmp_path: Path, photo_bytes: dict[str, bytes]) -> Path:
    path = tmp_path / "photos" / "chair.png"
    path.parent.mkdir()
    path.write_bytes(photo_bytes["chair.png"])
    return path


@pytest.mark.parametrize("where", ["local", "s3"])
def test_approve_publishes_and_reject_withdraws(
    where: str, photo: Path, tmp_path: Path, fast_options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    dest = str(tmp_path / "assets") if where == "local" else f"s3://{request.getfixturevalue('bucket')}/assets"
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    held = _convert(photo, dest, url, fast_options, review={**fast_options["review"], **HOLD})
    assert held.status == "needs_review" and _manifest(held.glb_uri) is None  # staged, not visible

    cat = Catalogue(url)
    try:
        outcome = decide(cat, held.asset_id, "approve", reviewer="ana", comment="colours match")
        assert outcome.published and outcome.to_status is AssetStatus.approved
        manifest = _manifest(held.glb_uri)
        assert manifest is not None and outcome.manifest_uri and outcome.manifest_uri.endswith("manifest.json")
        folder = open_store(held.glb_uri.rsplit("/", 1)[0])
        for entry in manifest["files"]:  # every listed object is there with that sha256
            assert folder.head(entry["key"]).sha256 == entry["sha256"]
        assert {"model.glb", "metrics.json", "intake/mask.png"} <= {e["key"] for e in manifest["files"]}
        prov = manifest["provenance"]
        assert prov["asset_id"] == held.asset_id and prov["review"]["reviewer"] == "ana"
        asset = cat.get_asset(held.asset_id)
        assert asset.status is AssetStatus.approved and asset.published_at is not None
        (event,) = cat.asset_detail(held.asset_id).reviews
        assert (event.reviewer, event.comment) == ("ana", "colours match")

        outcome = decide(cat, held.asset_id, "reject", reviewer="ben", comment="wrong colour after all")
        assert not outcome.published and outcome.to_status is AssetStatus.rejected
        assert _manifest(held.glb_uri) is None  # no consumer reads a manifest of an unapproved asset
        assert folder.exists("model.glb")  # the files stay for the reviewer
        asset = cat.get_asset(held.asset_id)
        assert asset.status is AssetStatus.rejected and asset.published_at is None
    finally:
        cat.close()


def test_a_failed_publish_leaves_no_manifest_and_the_status_unchanged(
    photo: Path, tmp_path: Path, fast_options: dict[str, Any], s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    held = _convert(photo, f"s3://{bucket}/assets", url, fast_options, review={**fast_options["review"], **HOLD})

    def deny_manifest(method: str, path: str, nth: int) -> tuple[int, str] | None:
        return (403, "AccessDenied") if method == "PUT" and path.endswith("/manifest.json") else None

    proxy = S3FaultProxy(s3_endpoint, deny_manifest).start()
    cat = Catalogue(url)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(PermanentStorageError) as exc:
            decide(cat, held.asset_id, "approve", reviewer="ana")
        assert "AccessDenied" in str(exc.value) and exc.value.transient is False
        assert proxy.injected  # the manifest write was refused
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        assert _manifest(held.glb_uri) is None
        asset = cat.get_asset(held.asset_id)
        assert asset.status is AssetStatus.needs_review and asset.published_at is None
        assert cat.asset_detail(held.asset_id).reviews == ()  # no review event either
    finally:
        proxy.stop()
        cat.close()


def test_a_new_version_waits_for_its_own_approval(photo: Path, tmp_path: Path, fast_options: dict[str, Any]) -> None:
    dest, url = str(tmp_path / "assets"), f"sqlite:///{tmp_path / 'cat.db'}"
    v1 = _convert(photo, dest, url, fast_options)
    assert v1.status == "published" and _manifest(v1.glb_uri) is not None
    # the same photo with new conversion parameters: a new version, held by the gate
    v2 = _convert(photo, dest, url, fast_options, mc_resolution=24, review={**fast_options["review"], **HOLD})
    assert v2.status == "needs_review" and v2.asset_id != v1.asset_id and v2.glb_uri != v1.glb_uri
    cat = Catalogue(url)
    try:
        assert cat.get_asset(v2.asset_id).version == 2
        old = cat.get_asset(v1.asset_id)
        assert old.status is AssetStatus.auto_approved and old.published_at is not None  # still the published one
        assert _manifest(v1.glb_uri) is not None and _manifest(v2.glb_uri) is None

        outcome = decide(cat, v2.asset_id, "approve", reviewer="ana")
        assert outcome.published and outcome.withdrawn == (v1.asset_id,)
        old = cat.get_asset(v1.asset_id)
        assert old.status is AssetStatus.superseded and old.published_at is None and old.superseded_by_id == v2.asset_id
        assert _manifest(v1.glb_uri) is None and _manifest(v2.glb_uri) is not None  # one version per photo is visible
        with pytest.raises(TransitionRefused):
            decide(cat, v1.asset_id, "approve", reviewer="ana", comment="back to the old one")
    finally:
        cat.close()


def test_a_new_version_the_gate_approves_replaces_the_old_one(photo: Path, tmp_path: Path, fast_options: dict[str, Any]) -> None:
    dest, url = str(tmp_path / "assets"), f"sqlite:///{tmp_path / 'cat.db'}"
    v1 = _convert(photo, dest, url, fast_options)
    v2 = _convert(photo, dest, url, fast_options, mc_resolution=24)
    assert v1.status == v2.status == "published" and v1.asset_id != v2.asset_id
    assert _manifest(v1.glb_uri) is None and _manifest(v2.glb_uri) is not None
    cat = Catalogue(url)
    try:
        assert cat.get_asset(v1.asset_id).status is AssetStatus.superseded
    finally:
        cat.close()
