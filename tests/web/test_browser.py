"""The review app in a real browser: Debian's chromium, headless, driven by Playwright (no browser download).

``asset3d serve`` runs as its own process on a free loopback port over a catalogue made by the real
``asset3d convert``. The test signs in as a reviewer, opens the queue, opens an asset, waits for
model-viewer's ``load`` event on the GLB, approves with a comment, and checks the catalogue and the bucket
changed (manifest present). Screenshots of the asset page go to ``$ASSET3D_TEST_ARTIFACTS`` (default: the
test's temporary folder); their paths are printed.

Under ``CI=true`` a missing chromium, Playwright or ``npm ci`` viewer FAILS the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import unused_port
from web_helpers import Converted, assert_manifest_matches, convert_photos, reviews_of, status_of

from asset3d.web.settings import REPO_ROOT

CHROMIUM = Path(os.environ.get("ASSET3D_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
VIEWER = REPO_ROOT / "node_modules" / "@google" / "model-viewer" / "dist" / "model-viewer.min.js"
WAIT_FOR_LOAD = """() => new Promise((resolve) => {
  const viewer = document.querySelector("model-viewer");
  if (!viewer) return resolve("no model-viewer element");
  if (viewer.loaded) return resolve("load");
  viewer.addEventListener("load", () => resolve("load"));
  viewer.addEventListener("error", (e) => resolve("error: " + JSON.stringify(e.detail && e.detail.type)));
  setTimeout(() => resolve("timeout"), 120000);
})"""


def _require(condition: bool, why: str) -> None:
    """Skip with ``why``, or fail under ``CI=true`` (the browser test must run there)."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} (CI=true: the browser test must run; .ci/run installs it)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser_ready() -> None:
    _require(CHROMIUM.is_file(), f"no chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _require(False, "the playwright package is not installed (pip install -e '.[dev]')")
    _require(VIEWER.is_file(), f"no model-viewer at {VIEWER} (npm ci)")


@pytest.fixture(scope="module")
def served(browser_ready: None, shared: Path, hold_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Converted, str]]:
    """``asset3d serve`` on a free loopback port: (base URL, its catalogue, ana's token)."""
    from asset3d.web.reviewers import add_reviewer

    root = tmp_path_factory.mktemp("browser")
    data = convert_photos(shared, root, f"sqlite:///{root / 'catalogue.db'}", hold_config, ("chair.png", "teapot.png"))
    token = add_reviewer(root / "reviewers.json", "ana")
    port = unused_port()
    log = (root / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asset3d", "serve", "--port", str(port), "--catalogue-url", data.url,
         "--bucket", str(data.out), "--bucket", str(data.photos), "--reviewers-file", str(root / "reviewers.json")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/login", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"asset3d serve did not start:\n{(root / 'serve.log').read_text()}") from None
                time.sleep(0.2)
        yield base, data, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ASSET3D_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_review_an_asset_in_a_real_browser(served: tuple[str, Converted, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, data, token = served
    asset_id, folder = data.ids["chair"], data.folder("chair")
    requests: list[str] = []
    glb_responses: list[tuple[int, str]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(60_000)
            page.on("request", lambda r: requests.append(r.url))
            page.on("response", lambda r: glb_responses.append((r.status, r.headers.get("content-type", "")))
                    if r.url.endswith(f"/files/{asset_id}/model.glb") else None)  # fmt: skip

            page.goto(f"{base}/")
            assert "/login" in page.url  # reads need a reviewer
            page.fill("input[name=reviewer]", "ana")
            page.fill("input[name=token]", token)
            page.click("form[action='/login'] button[type=submit]")
            page.wait_for_url(f"{base}/")
            assert page.inner_text("#reviewer-name") == "ana"
            assert page.locator(f"a.asset-link[href='/assets/{asset_id}']").count() == 1
            assert page.locator("tr.status-needs_review a.asset-link").count() == 2  # both held assets are queued

            page.click(f"a.asset-link[href='/assets/{asset_id}']")
            page.wait_for_url(f"{base}/assets/{asset_id}")
            outcome = page.evaluate(WAIT_FOR_LOAD)
            assert outcome == "load", outcome
            assert page.get_attribute("#viewer", "data-loaded") == "true"
            assert glb_responses and glb_responses[0] == (200, "model/gltf-binary")
            page.wait_for_function("document.getElementById('photo').complete")
            assert page.evaluate("document.getElementById('photo').naturalWidth") > 0
            assert "approve_min_silhouette_iou" in page.inner_text("#gate")
            shots = _artifacts(tmp_path)
            before = shots / f"asset-{asset_id}.png"
            page.screenshot(path=str(before), full_page=True)
            print(f"screenshot of the asset page: {before}")

            page.fill("textarea[name=comment]", "shape and colour match the photo")
            page.click("#approve")
            page.wait_for_url(f"{base}/assets/{asset_id}?done=approved")
            assert "Recorded: approved" in page.inner_text("#review-done")
            assert page.inner_text("#asset-status") == "approved"
            after = shots / f"asset-{asset_id}-approved.png"
            page.screenshot(path=str(after), full_page=True)
            print(f"screenshot after approving: {after}")
        finally:
            browser.close()

    assert status_of(data.url, asset_id) == "approved"
    (event,) = reviews_of(data.url, asset_id)
    assert (event.reviewer, event.comment) == ("ana", "shape and colour match the photo")
    assert_manifest_matches(folder)
    assert before.stat().st_size > 10_000
    offsite = [u for u in requests if not u.startswith(base) and not u.startswith(("data:", "blob:"))]
    assert offsite == [], offsite  # no CDN: the viewer and its decoders come from the app
