"""The review app's JSON API and pages over a catalogue made by ``asset3d convert``, on SQLite and PostgreSQL.

The module's assets (see conftest): ``chair`` is approved and rejected through the API, ``teapot`` through
the page's form, ``cerebro`` is only read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from web_helpers import Converted, assert_manifest_matches, basic, bearer, manifest_of, reviews_of, status_of

from asset3d.web.security import CSRF_COOKIE

Client = Callable[..., Any]


def test_reads_need_a_reviewer_unless_anonymous_reads_are_configured(
    converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    tokens = reviewers[1]
    client = make_client(converted)
    r = client.get("/api/assets")
    assert r.status_code == 401 and r.json()["reason"] == "auth_required" and "Bearer" in r.headers["www-authenticate"]
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    assert client.get(f"/files/{converted.ids['cerebro']}/model.glb").status_code == 401
    assert client.get("/api/assets", headers=bearer("a3r_not-a-token")).status_code == 401
    assert client.get("/api/assets", headers=basic("ana", tokens["bo"])).status_code == 401  # bo's token is not ana's
    assert client.get("/api/me", headers=basic("ana", tokens["ana"])).json()["reviewer"] == "ana"
    assert client.get("/api/me", headers=bearer(tokens["bo"])).json() == {"reviewer": "bo", "via": "bearer", "anonymous_read": False}

    open_client = make_client(converted, anonymous_read=True)
    assert open_client.get("/api/assets").status_code == 200
    assert open_client.get("/").status_code == 200
    assert open_client.get("/api/assets", headers=bearer("a3r_wrong")).status_code == 401  # wrong credentials stay wrong


def test_queue_api_orders_filters_and_pages(converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]) -> None:
    client = make_client(converted)
    auth = bearer(reviewers[1]["ana"])
    body = client.get("/api/assets", headers=auth).json()
    statuses = [item["status"] for item in body["items"]]
    assert statuses == sorted(statuses, key=lambda s: s != "needs_review")  # needs_review first
    held = [item for item in body["items"] if item["status"] == "needs_review"]
    created = [item["created_at"] for item in held]
    assert created == sorted(created, reverse=True)  # then newest first
    cerebro = next(item for item in body["items"] if item["sku"] == "cerebro")
    assert cerebro["asset_id"] == converted.ids["cerebro"] and len(cerebro["conversion_key"]) == 64
    assert "silhouette" in cerebro["first_reason"] and cerebro["thumbnail_url"].endswith("/previews/0")

    one = client.get("/api/assets", params={"sku": "cerebro"}, headers=auth).json()
    assert [i["asset_id"] for i in one["items"]] == [converted.ids["cerebro"]] and one["total"] == 1
    paged = client.get("/api/assets", params={"limit": 1, "offset": 1}, headers=auth).json()
    assert len(paged["items"]) == 1 and paged["total"] == body["total"] and paged["items"][0] == body["items"][1]
    run_id = client.get(f"/api/assets/{converted.ids['cerebro']}", headers=auth).json()["run"]["run_id"]
    by_run = client.get("/api/assets", params={"run": run_id, "metric": "asset.faces>=1"}, headers=auth).json()
    assert {i["sku"] for i in by_run["items"]} >= {"cerebro"}
    none = client.get("/api/assets", params={"metric": "asset.faces<1"}, headers=auth).json()
    assert none["items"] == [] and none["total"] == 0

    unknown = client.get("/api/assets", params={"metric": "faces<=50000"}, headers=auth)
    assert unknown.status_code == 400 and "asset.faces" in unknown.json()["detail"]  # never an empty result
    assert client.get("/api/assets", params={"status": "published"}, headers=auth).status_code == 400
    page = client.get("/", params={"metric": "faces<=50000"}, headers=auth)
    assert page.status_code == 400 and "known metrics" in page.text and "did you mean asset.faces" in page.text
    html = client.get("/", params={"sku": "cerebro"}, headers=auth)
    assert html.status_code == 200 and f'href="/assets/{converted.ids["cerebro"]}"' in html.text


def test_asset_api_pages_and_unknown_ids(converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]) -> None:
    client = make_client(converted)
    auth = bearer(reviewers[1]["ana"])
    asset_id = converted.ids["cerebro"]
    d = client.get(f"/api/assets/{asset_id}", headers=auth).json()
    assert d["asset_id"] == asset_id and d["status"] == "needs_review" and d["sku"] == "cerebro"
    assert d["conversion_key"] == converted.folder("cerebro").name
    assert d["gate"]["decision"] == "needs_review" and d["gate_source"] in ("catalogue", "metrics.json")
    rules = [r["rule"] for r in d["gate"]["reasons"]]
    assert "approve_min_silhouette_iou" in rules and d["gate"]["unscaled"] is True  # no product dimensions
    assert d["files"]["glb"] == f"/files/{asset_id}/model.glb" and len(d["files"]["previews"]) == len(d["previews"])
    assert d["run"]["weights_sha256"] and d["photo"]["uri"].endswith("cerebro.jpg")
    assert "asset.faces" in d["metrics"]

    page = client.get(f"/assets/{asset_id}", headers=auth)
    assert page.status_code == 200
    for needle in ("<model-viewer", f'src="/files/{asset_id}/model.glb"', "/vendor/model-viewer.min.js", "approve_min_silhouette_iou",
                   'class="failing"', "Unscaled", d["run"]["weights_sha256"], "source photo", 'name="csrf_token"'):  # fmt: skip
        assert needle in page.text, needle
    assert "cdn" not in page.text.lower() and "https://" not in page.text  # nothing from another origin
    assert "default-src 'self'" in page.headers["content-security-policy"]

    for path in ("/api/assets/987654", "/files/987654/model.glb", "/files/987654/photo", "/files/987654/previews/0"):
        r = client.get(path, headers=auth)
        assert r.status_code == 404 and r.json()["reason"] == "not_found", path
    html = client.get("/assets/987654", headers=auth)
    assert html.status_code == 404 and "no asset with id 987654" in html.text and "Traceback" not in html.text
    r = client.post("/api/assets/987654/review", json={"decision": "approved"}, headers=auth)
    assert r.status_code == 404 and "987654" in r.json()["detail"]


def test_overview_failures_metrics_and_openapi(converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]) -> None:
    client = make_client(converted)
    auth = bearer(reviewers[1]["bo"])
    ov = client.get("/api/overview", headers=auth).json()
    assert ov["total"] >= 3 and set(ov["counts"]) >= {"needs_review", "approved", "rejected"}
    assert ov["metrics"]["asset.faces"]["count"] >= 3
    assert any(f["stage"] == "fetch" and f["photo_uri"].endswith("broken.png") for f in ov["failures"])
    failures = client.get("/api/failures", params={"limit": 5}, headers=auth).json()
    assert failures and {"failure_id", "stage", "reason", "message", "asset_id"} <= set(failures[0])
    assert client.get("/api/failures", params={"since": "2999-01-01T00:00:00"}, headers=auth).json() == []
    names = client.get("/api/metrics", headers=auth).json()["names"]
    assert "input_view.silhouette_iou" in names and names == sorted(names)
    page = client.get("/overview", headers=auth)
    assert page.status_code == 200 and page.text.count('<svg class="dist"') == len(ov["metrics"]) and "broken.png" in page.text
    schema = client.get("/openapi.json").json()
    assert {"/api/assets", "/api/assets/{asset_id}", "/api/assets/{asset_id}/review", "/api/overview"} <= set(schema["paths"])
    review = schema["paths"]["/api/assets/{asset_id}/review"]["post"]
    assert "requestBody" in review


def test_review_api_refuses_anonymous_wrong_and_malformed_writes(
    converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    client = make_client(converted, anonymous_read=True)
    asset_id = converted.ids["cerebro"]
    url = f"/api/assets/{asset_id}/review"
    body = {"decision": "approved", "comment": "ok"}
    assert client.post(url, json=body).status_code == 401  # anonymous, even with anonymous reads
    assert client.post(url, json=body, headers=bearer("a3r_wrong")).status_code == 401
    assert client.post(url, json=body, headers=basic("ana", "a3r_wrong")).status_code == 401
    good = bearer(reviewers[1]["ana"])
    form = client.post(url, content='{"decision": "approved"}', headers={**good, "Content-Type": "text/plain"})
    assert form.status_code in (415, 422)  # a cross-site form cannot send JSON
    assert client.post(url, json={"decision": "publish"}, headers=good).status_code == 422
    assert client.post(url, json={**body, "reviewer": "mallory"}, headers=good).status_code == 422  # no reviewer field
    assert status_of(converted.url, asset_id) == "needs_review" and reviews_of(converted.url, asset_id) == []
    assert manifest_of(converted.folder("cerebro")) is None


def test_approve_through_the_api_publishes_refusals_are_409_and_reject_unpublishes(
    converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    client = make_client(converted)
    ana = bearer(reviewers[1]["ana"])
    asset_id, folder = converted.ids["chair"], converted.folder("chair")
    url = f"/api/assets/{asset_id}/review"
    r = client.post(url, json={"decision": "approved", "comment": "matches the photo"}, headers=ana)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["from_status"], out["to_status"], out["published"], out["reviewer"]) == ("needs_review", "approved", True, "ana")
    doc = assert_manifest_matches(folder)
    assert doc["provenance"]["asset_id"] == asset_id
    assert status_of(converted.url, asset_id) == "approved"
    (event,) = reviews_of(converted.url, asset_id)
    assert (event.reviewer, event.comment) == ("ana", "matches the photo")

    again = client.post(url, json={"decision": "approved"}, headers=ana)
    assert again.status_code == 409 and again.json()["reason"] == "no_change"
    overturn = client.post(url, json={"decision": "rejected"}, headers=ana)
    assert overturn.status_code == 409 and overturn.json()["reason"] == "comment_required"
    assert manifest_of(folder) is not None  # refusals change nothing

    bo = basic("bo", reviewers[1]["bo"])
    r = client.post(url, json={"decision": "rejected", "comment": "wrong colour after all"}, headers=bo)
    assert r.status_code == 200 and r.json()["to_status"] == "rejected" and r.json()["published"] is False
    assert manifest_of(folder) is None and status_of(converted.url, asset_id) == "rejected"
    assert [e.reviewer for e in reviews_of(converted.url, asset_id)] == ["ana", "bo"]


def _login(client: Any, name: str, token: str) -> None:
    client.get("/login")
    csrf = client.cookies.get(CSRF_COOKIE)
    r = client.post("/login", data={"reviewer": name, "token": token, "csrf_token": csrf, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_form_review_needs_a_csrf_token_and_records_the_signed_in_reviewer(
    converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    asset_id = converted.ids["teapot"]
    url = f"/assets/{asset_id}/review"
    client = make_client(converted)
    _login(client, "bo", reviewers[1]["bo"])
    csrf = client.cookies.get(CSRF_COOKIE)
    assert client.get(f"/assets/{asset_id}").status_code == 200  # the session reads pages

    no_token = client.post(url, data={"decision": "rejected", "comment": "x"}, follow_redirects=False)
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    forged = client.post(url, data={"decision": "rejected", "csrf_token": "forged.token"}, follow_redirects=False)
    assert forged.status_code == 403
    stranger = make_client(converted)
    stranger.get("/login")
    anon = stranger.post(url, data={"decision": "rejected", "csrf_token": stranger.cookies.get(CSRF_COOKIE)}, follow_redirects=False)
    assert anon.status_code == 401
    assert status_of(converted.url, asset_id) == "needs_review"

    ok = client.post(
        url, data={"decision": "rejected", "comment": "handle missing", "csrf_token": csrf, "reviewer": "mallory"},
        follow_redirects=False,
    )  # fmt: skip
    assert ok.status_code == 303 and ok.headers["location"] == f"/assets/{asset_id}?done=rejected"
    (event,) = reviews_of(converted.url, asset_id)
    assert (event.reviewer, event.to_status.value, event.comment) == ("bo", "rejected", "handle missing")
    page = client.get(ok.headers["location"])
    assert "Recorded: rejected" in page.text and "handle missing" in page.text
    refused = client.post(url, data={"decision": "rejected", "csrf_token": csrf}, follow_redirects=False)
    assert refused.status_code == 409 and "already rejected" in refused.text and "Traceback" not in refused.text


def test_files_are_streamed_with_their_types_and_caching_headers(
    converted: Converted, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    client = make_client(converted)
    auth = bearer(reviewers[1]["ana"])
    asset_id, folder = converted.ids["cerebro"], converted.folder("cerebro")
    glb = client.get(f"/files/{asset_id}/model.glb", headers=auth)
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    assert glb.content == (folder / "model.glb").read_bytes() and glb.content[:4] == b"glTF"
    assert "max-age" in glb.headers["cache-control"] and glb.headers["etag"]
    assert client.get(f"/files/{asset_id}/model.glb", headers={**auth, "If-None-Match": glb.headers["etag"]}).status_code == 304
    preview = client.get(f"/files/{asset_id}/previews/0", headers=auth)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png" and preview.content[:4] == b"\x89PNG"
    assert client.get(f"/files/{asset_id}/previews/99", headers=auth).status_code == 404
    photo = client.get(f"/files/{asset_id}/photo", headers=auth)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(photo.content).hexdigest() == hashlib.sha256((converted.photos / "cerebro.jpg").read_bytes()).hexdigest()
    assert photo.headers["cache-control"] == "private, no-cache" and photo.headers["x-content-type-options"] == "nosniff"
    mask = client.get(f"/files/{asset_id}/intake/mask.png", headers=auth)
    assert mask.status_code == (200 if (folder / "intake" / "mask.png").is_file() else 404)
    assert client.get(f"/files/{asset_id}/intake/secret.txt", headers=auth).status_code == 422  # not a file name it knows
    viewer = client.get("/vendor/model-viewer.min.js")
    assert viewer.status_code == 200 and "javascript" in viewer.headers["content-type"]
    wasm = client.get("/vendor/draco/draco_decoder.wasm")
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
