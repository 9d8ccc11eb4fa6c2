"""`asset3d demo` (what `make demo` runs): the sample photos shipped in the repo, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from asset3d.cli import main
from asset3d.cli.demo import EXAMPLES
from intake import decode_image
from storage.catalogue import Catalogue

REPO = Path(__file__).resolve().parents[2]


def test_samples_ship_in_the_repo_and_are_small() -> None:
    assert EXAMPLES.is_relative_to(REPO)  # a fresh clone has no ../shared
    photos = sorted(p for p in EXAMPLES.rglob("*") if p.is_file())
    assert len(photos) >= 3 and sum(p.stat().st_size for p in photos) < 1_000_000
    for p in photos:
        assert p.parent.parent == EXAMPLES  # examples/photos/<SKU>/<photo>
        decode_image(p.read_bytes(), name=str(p))


@pytest.mark.usefixtures("prefect_harness", "result_cache")
def test_demo_converts_the_samples_and_says_which_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSET3D_PREVIEW_VIEWS", "2")  # settings from the environment reach the demo too
    monkeypatch.setenv("ASSET3D_PREVIEW_SIZE", "128")
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--model", "untrained-tiny", "--mc-resolution", "32"]) == 0
    text = capsys.readouterr().out
    assert text.count("untrained tiny model: geometry is meaningless, for plumbing only") >= 2
    assert "## Catalogue" in text and "| skipped | 0 |" in text
    skus = {p.name for p in EXAMPLES.iterdir()}
    cat = Catalogue(f"sqlite:///{out / 'catalogue.db'}")
    try:
        assets = cat.review_queue(limit=None)
    finally:
        cat.close()
    assert {a.sku for a in assets} == skus
    assert all((out / "assets" / a.sku / a.conversion_key / "model.glb").is_file() for a in assets)
    for a in assets:
        assert a.sku in text
