"""Settings: one place, environment ``ASSET3D_*`` over a config file over defaults; explicit values win."""

from __future__ import annotations

from pathlib import Path

import pytest

from asset3d.pipeline.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASSET3D_CONFIG", "ASSET3D_PRESET", "ASSET3D_BATCH_SIZE", "ASSET3D_CATALOGUE_URL", "ASSET3D_DATABASE_URL", "ASSET3D_REVIEW"):
        monkeypatch.delenv(name, raising=False)


def test_precedence_explicit_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "asset3d.yaml"
    cfg.write_text("preset: shopify\nbatch_size: 3\nmc_resolution: 128\n")
    s = load_settings(cfg)
    assert (s.preset, s.batch_size, s.mc_resolution, s.device) == ("shopify", 3, 128, "auto")
    monkeypatch.setenv("ASSET3D_BATCH_SIZE", "7")
    monkeypatch.setenv("ASSET3D_CONFIG", str(cfg))
    s = load_settings()
    assert (s.preset, s.batch_size) == ("shopify", 7)  # env over file
    assert load_settings(batch_size=9, preset=None).batch_size == 9  # explicit over env; None means "not given"


def test_toml_file_and_json_env_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "asset3d.toml"
    cfg.write_text('dest = "s3://assets/v1"\n[review]\napprove_min_silhouette_iou = 0.8\n')
    s = load_settings(cfg)
    assert s.dest == "s3://assets/v1" and s.review_thresholds()["approve_min_silhouette_iou"] == 0.8
    monkeypatch.setenv("ASSET3D_REVIEW", '{"approve_max_components": 9}')
    t = load_settings().review_thresholds()
    assert t["approve_max_components"] == 9 and t["reject_below_silhouette_iou"] == 0.70  # packaged default kept


def test_catalogue_url_follows_the_catalogue_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().resolved_catalogue_url() == "sqlite:///.asset3d/catalogue.db"
    monkeypatch.setenv("ASSET3D_CATALOGUE_URL", "postgresql+psycopg://u@db/cat")
    assert load_settings().resolved_catalogue_url() == "postgresql+psycopg://u@db/cat"
    assert load_settings(catalogue_url="sqlite:///x.db").resolved_catalogue_url() == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("text", "field"),
    [("batch_size: 0\n", "batch_size"), ("preset: marketplace\n", "preset"), ("bogus: 1\n", "bogus"), ("sku_pattern: 'SKU-.*'\n", "sku_pattern")],
)
def test_bad_values_name_the_setting(tmp_path: Path, text: str, field: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg)
    assert field in str(exc.value) and str(cfg) in str(exc.value)


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")


def test_conversion_params_are_what_shapes_an_asset() -> None:
    s = load_settings()
    assert set(s.conversion_params()) == {
        "preset", "faces", "texture_size", "mc_resolution", "mc_threshold", "intake_method", "foreground_ratio",
        "preview_views", "preview_size",
    }  # fmt: skip
    assert s.conversion_params() == load_settings(batch_size=64, device="cpu").conversion_params()  # not identity
    assert s.conversion_params() != load_settings(mc_resolution=128).conversion_params()
