"""`asset3d demo` (what `make demo` runs): the sample photos shipped in the repo, end to end.

The model the demo picks is tested against the network it would meet: a hub that does not answer (a closed
loopback port), a stand-in hub on loopback serving a tiny model as ``stabilityai/TripoSR`` (the real
huggingface_hub client downloads it, `hub_stand_in`), and ``--model demo`` with that stand-in counting
requests.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_stand_in import COMMIT, StandIn, hub_stand_in
from loopback import unused_port

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


# -- which model the demo runs ------------------------------------------------------------------------------


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of this test's own; no proxy and no HF_HUB_OFFLINE."""
    from huggingface_hub import constants

    from triposr.loading import PROXY_VARIABLES

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # huggingface_hub read the variables at import
    for name in (*PROXY_VARIABLES, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return cache


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """``HF_ENDPOINT`` for this test: `triposr.loading` passes it to every huggingface_hub call."""
    monkeypatch.setenv("HF_ENDPOINT", endpoint)


@pytest.fixture
def hub(tiny_model: Path, hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """A stand-in hub on loopback serving the tiny model as stabilityai/TripoSR, set as ``HF_ENDPOINT``."""
    with hub_stand_in({"stabilityai/TripoSR": tiny_model}) as stand_in:
        use_endpoint(monkeypatch, stand_in.endpoint)
        yield stand_in


@pytest.fixture
def one_photo(tmp_path: Path) -> Path:
    """A source folder with one sample photo (one SKU)."""
    folder = tmp_path / "photos" / "BRAIN-002"
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLES / "BRAIN-002" / "cerebro.jpg", folder)
    return folder.parent


@pytest.fixture
def fast_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSET3D_PREVIEW_VIEWS", "2")
    monkeypatch.setenv("ASSET3D_PREVIEW_SIZE", "128")
    monkeypatch.setenv("ASSET3D_DEVICE", "cpu")
    monkeypatch.setenv("ASSET3D_DTYPE", "fp32")


def recorded(out: Path) -> list[tuple[str, str, str, str, int]]:
    """``(sku, asset weights sha256, run model id, run weights sha256, run grid)`` of every asset in the demo's
    catalogue."""
    cat = Catalogue(f"sqlite:///{out / 'catalogue.db'}")
    try:
        rows = []
        for a in cat.review_queue(limit=None):
            assert a.run_id is not None
            run = cat.get_run(a.run_id)
            rows.append((a.sku, a.weights_sha256, run.model_id, run.weights_sha256, run.parameters["mc_resolution"]))
        return rows
    finally:
        cat.close()


@pytest.mark.usefixtures("hf_home")
def test_offline_pick_is_the_demo_model_with_one_line_and_no_request(
    hub: StandIn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asset3d.cli.demo import pick_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    choice = pick_model("auto")
    assert choice.kind in ("demo", "untrained") and hub.requests == []
    assert capsys.readouterr().err == (
        f"asset3d demo: HF_HUB_OFFLINE is set, so stabilityai/TripoSR cannot be downloaded; falling back to {choice.label}\n"
    )


@pytest.mark.usefixtures("prefect_harness", "result_cache", "fast_demo", "hf_home")
def test_without_the_hub_the_demo_says_so_in_one_line_and_runs_the_demo_model(
    tmp_path: Path, one_photo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from triposr.loading import DEMO_DIR, sha256_file

    port = unused_port()
    use_endpoint(monkeypatch, f"http://127.0.0.1:{port}")
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--photos", str(one_photo), "--mc-resolution", "32"]) == 0
    captured = capsys.readouterr()
    notice = [line for line in captured.err.splitlines() if line.startswith("asset3d demo:")]
    assert len(notice) == 1 and "Traceback" not in captured.err and "Retry" not in captured.err, captured.err
    assert notice[0].startswith("asset3d demo: cannot open a connection to http://127.0.0.1:")
    assert f":{port}" in notice[0] and "falling back to the project's bundled demo model" in notice[0]
    assert "model: the project's bundled demo model" in captured.out
    demo_sha = sha256_file(DEMO_DIR / "model.safetensors")
    assert f"weights sha256 {demo_sha}" in captured.out
    assert recorded(out) == [("BRAIN-002", demo_sha, str(DEMO_DIR.resolve()), demo_sha, 32)]


@pytest.mark.usefixtures("prefect_harness", "result_cache", "fast_demo")
def test_the_demo_fetches_the_official_weights_and_runs_them_on_converts_grid(
    tmp_path: Path, one_photo: Path, tiny_model: Path, hub: StandIn, hf_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asset3d.pipeline.settings import Settings
    from triposr.loading import sha256_file

    served = sha256_file(tiny_model / "model.ckpt")
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--photos", str(one_photo)]) == 0
    captured = capsys.readouterr()
    snapshot = hf_home / "models--stabilityai--TripoSR" / "snapshots" / COMMIT
    assert (snapshot / "config.yaml").read_bytes() == (tiny_model / "config.yaml").read_bytes()
    assert sha256_file(snapshot / "model.ckpt") == served
    assert ("GET", "/stabilityai/TripoSR/resolve/main/config.yaml") in hub.requests
    assert ("GET", f"/cdn/{served}") in hub.requests  # the weights came from the stand-in's CDN
    assert "falling back" not in captured.err
    assert "model: official stabilityai/TripoSR weights" in captured.out
    assert f"weights sha256 {served}" in captured.out
    grid = Settings.model_fields["mc_resolution"].default
    assert grid == 256 and f"grid {grid}^3" in captured.out
    assert recorded(out) == [("BRAIN-002", served, "stabilityai/TripoSR", served, grid)]


@pytest.mark.usefixtures("prefect_harness", "result_cache", "fast_demo", "hf_home")
def test_model_demo_runs_the_bundled_model_without_a_network_request(
    tmp_path: Path, one_photo: Path, hub: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    from triposr.loading import DEMO_DIR, sha256_file

    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out), "--photos", str(one_photo), "--model", "demo", "--mc-resolution", "32"]) == 0
    captured = capsys.readouterr()
    assert hub.requests == []
    assert "falling back" not in captured.err and "model: the project's bundled demo model" in captured.out
    demo_sha = sha256_file(DEMO_DIR / "model.safetensors")
    assert recorded(out) == [("BRAIN-002", demo_sha, str(DEMO_DIR.resolve()), demo_sha, 32)]
