"""`asset3d db`, `asset3d catalogue` and `asset3d review` on both engines: text, JSON, exit codes, the gate's
reasons, metric names, the catalogue option, and read-only commands that create nothing."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from asset3d.cli import catalogue as catalogue_cmd
from asset3d.cli import db as db_cmd
from asset3d.cli import review as review_cmd
from storage.catalogue import AssetStatus, Catalogue, MetricFilter, params_hash

WEIGHTS = hashlib.sha256(b"w").hexdigest()
SECRET = "hunter2-pw"
UNREACHABLE = f"postgresql+psycopg://bot:{SECRET}@127.0.0.1:1/catalogue?connect_timeout=2"
LONG_MESSAGE = "no foreground found: " + "the backdrop and the object share their colour, " * 4 + "END-OF-MESSAGE"
GATE = {
    "decision": "needs_review",
    "reasons": [
        {"rule": "approve_min_silhouette_iou", "threshold": 0.9, "value": 0.41,
         "message": "silhouette IoU 0.410 < 0.9 (approve_min_silhouette_iou)"},
        "12 components > 3 (approve_max_components)",  # an older verdict's plain string
    ],
    "notes": ["unscaled: no product dimensions, the model's own size is written as metres"],
    "intake": {"method": "rembg", "flags": {"clipped": True, "tiny_object": False}},
}  # fmt: skip


def cli(argv: Sequence[str]) -> int:
    """Parse and run like `asset3d` does, with just the catalogue commands registered."""
    parser = argparse.ArgumentParser(prog="asset3d")
    sub = parser.add_subparsers(dest="command")
    for module in (catalogue_cmd, review_cmd, db_cmd):
        module.register(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled(migrated_url: str, tmp_path: Path) -> dict[str, int]:
    """Three assets: SKU-1 needs review (with the gate's verdict), SKU-2 auto-approved, SKU-3 failed; one
    failure with a long message. Their folders are in a local bucket under tmp_path (no files staged)."""
    cat = Catalogue(migrated_url)
    ids = {}
    for sku, status, faces in (("SKU-1", "needs_review", 20000), ("SKU-2", "auto_approved", 60000), ("SKU-3", "failed", 10)):
        photo = cat.upsert_photo(
            sku, uri=f"s3://photos/{sku}/front.png", bucket="photos", key=f"{sku}/front.png",
            sha256=hashlib.sha256(sku.encode()).hexdigest(), size_bytes=100, width=64, height=64,
        )  # fmt: skip
        folder = (tmp_path / "bucket" / sku / ("a" * 64)).as_uri()
        asset, _ = cat.record_asset(
            photo_id=photo.id, params_hash=params_hash({"preset": "web"}), weights_sha256=WEIGHTS, preset="web",
            status=status, glb_uri=f"{folder}/model.glb", faces=faces, metrics={"asset.faces": faces},
            preview_uris=[f"{folder}/previews/view_00.png", f"{folder}/previews/contact_sheet.png"],
            gate=GATE if sku == "SKU-1" else None,
        )  # fmt: skip
        ids[sku] = asset.id
    cat.record_failure(stage="intake", reason="empty_mask", message=LONG_MESSAGE, photo_id=photo.id)
    cat.close()
    return ids


def test_db_commands_round_trip(catalogue_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "db", "check", "--catalogue-url", catalogue_url)
    assert code == 1 and "upgrade" in err
    code, out, err = run(capsys, "db", "upgrade", "--catalogue-url", catalogue_url)
    assert code == 0 and ": at " in out and err.startswith("catalogue: ")
    code, out, _ = run(capsys, "db", "current", "--catalogue-url", catalogue_url)
    assert code == 0 and "(head)" in out
    code, out, _ = run(capsys, "db", "check", "--url", catalogue_url)  # the hidden alias still works
    assert code == 0 and "models match migrations" in out
    code, out, _ = run(capsys, "db", "downgrade", "base", "--catalogue-url", catalogue_url)
    assert code == 0 and "at base" in out
    code, out, _ = run(capsys, "db", "current", "--catalogue-url", catalogue_url)
    assert out.startswith("base")
    code, _, err = run(capsys, "db", "upgrade", "nonexistent-rev", "--catalogue-url", catalogue_url)
    assert code == 2 and "nonexistent-rev" in err


def test_list_json_and_table_with_first_reasons(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "catalogue", "list", "--json", "--catalogue-url", migrated_url)
    rows = json.loads(out)
    assert code == 0 and isinstance(rows, list) and err.startswith("catalogue: ")
    assert [(r["asset_id"], r["status"]) for r in rows] == [
        (filled["SKU-1"], "needs_review"), (filled["SKU-2"], "auto_approved"), (filled["SKU-3"], "failed"),
    ]  # fmt: skip
    assert rows[0]["first_reason"] == "silhouette IoU 0.410 < 0.9 (approve_min_silhouette_iou) (+1 more)"
    assert rows[1]["first_reason"] is None and len(rows[0]["conversion_key"]) == 64
    code, out, _ = run(capsys, "catalogue", "list", "--json", "--sku", "SKU-2", "--catalogue-url", migrated_url)
    assert [r["sku"] for r in json.loads(out)] == ["SKU-2"]
    code, out, _ = run(capsys, "catalogue", "list", "--json", "--metric", "asset.faces>=15000", "--catalogue-url", migrated_url)
    assert [r["asset_id"] for r in json.loads(out)] == [filled["SKU-1"], filled["SKU-2"]]
    code, out, _ = run(capsys, "catalogue", "list", "--catalogue-url", migrated_url)
    lines = out.splitlines()
    assert lines[0].split() == ["asset", "id", "status", "sku", "ver", "preset", "created", "(UTC)", "faces", "first", "reason"]
    held = next(line for line in lines if "SKU-1" in line)
    assert "silhouette IoU 0.410 < 0.9" in held
    code, out, _ = run(capsys, "catalogue", "list", "--status", "failed", "--catalogue-url", migrated_url)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and "SKU-3" in lines[2]
    assert lines[2][lines[0].index("status") :].startswith("failed")  # columns line up under their headers
    code, out, _ = run(capsys, "catalogue", "list", "--sku", "NOPE", "--catalogue-url", migrated_url)
    assert code == 0 and "no assets" in out
    code, _, err = run(capsys, "catalogue", "list", "--status", "published", "--catalogue-url", migrated_url)
    assert code == 2 and "'published' is not one of" in err


def test_unknown_metric_names_are_an_error_listing_the_known_ones(
    migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "catalogue", "list", "--metric", "faces<=50000", "--catalogue-url", migrated_url)
    assert code == 2 and out == ""
    assert "unknown metric 'faces' (did you mean asset.faces?)" in err and "known metrics: asset.faces" in err


def test_show_prints_the_gate_flags_and_previews(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    one = str(filled["SKU-1"])
    code, out, _ = run(capsys, "catalogue", "show", one, "--catalogue-url", migrated_url)
    text = out
    assert code == 0 and "needs_review" in out
    assert "gate            needs_review" in out
    flat = " ".join(out.split())  # reasons wrap to the terminal's width
    assert "- silhouette IoU 0.410 < 0.9 (approve_min_silhouette_iou) [rule approve_min_silhouette_iou, value 0.41, threshold 0.9]" in flat
    assert "[rule approve_max_components]" in flat
    assert "intake flags    clipped" in out and "unscaled" in out
    previews = out.split("\npreviews\n")[1].split("\n\n")[0].splitlines()
    assert [p.strip().rsplit("/", 1)[1] for p in previews] == ["view_00.png", "contact_sheet.png"]  # one per line

    code, out, _ = run(capsys, "catalogue", "show", one, "--json", "--catalogue-url", migrated_url)
    obj = json.loads(out)
    assert obj["asset_id"] == filled["SKU-1"] and obj["status"] == "needs_review" and len(obj["conversion_key"]) == 64
    assert obj["gate"]["decision"] == "needs_review" and obj["gate"]["intake_flags"] == ["clipped"] and obj["gate"]["unscaled"]
    assert obj["gate"]["reasons"][0] == GATE["reasons"][0]  # type: ignore[index]
    assert obj["gate"]["reasons"][1]["rule"] == "approve_max_components"
    assert obj["photo"]["uri"] == "s3://photos/SKU-1/front.png" and obj["metrics"]["asset.faces"]["value"] == 20000
    assert len(obj["previews"]) == 2 and obj["reviews"] == []
    assert f"conversion key  {obj['conversion_key']}" in text
    code, out, _ = run(capsys, "catalogue", "show", str(filled["SKU-2"]), "--catalogue-url", migrated_url)
    assert "(no verdict recorded for this asset)" in out
    code, out, err = run(capsys, "catalogue", "show", "987654", "--catalogue-url", migrated_url)
    assert code == 2 and out == "" and "no asset with id 987654" in err


def test_stats_and_failures_print_whole_messages(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalogue", "stats", "--json", "--catalogue-url", migrated_url)
    stats = json.loads(out)
    assert code == 0 and stats["total"] == 3
    assert stats["counts"]["needs_review"] == 1 and stats["counts"]["superseded"] == 0
    assert stats["metrics"]["asset.faces"]["count"] == 3 and stats["metrics"]["asset.faces"]["median"] == 20000
    code, out, _ = run(capsys, "catalogue", "stats", "--catalogue-url", migrated_url)
    assert code == 0 and "needs_review" in out and "p95" in out
    code, out, _ = run(capsys, "catalogue", "failures", "--json", "--catalogue-url", migrated_url)
    (failure,) = json.loads(out)
    assert (failure["stage"], failure["reason"], failure["message"]) == ("intake", "empty_mask", LONG_MESSAGE)
    assert "failure_id" in failure and failure["sku"] == "SKU-3"
    code, out, _ = run(capsys, "catalogue", "failures", "--since", "2999-01-01", "--json", "--catalogue-url", migrated_url)
    assert json.loads(out) == []
    code, out, _ = run(capsys, "catalogue", "failures", "--catalogue-url", migrated_url)
    assert "intake/empty_mask" in out and "sku SKU-3" in out
    assert " ".join(out.split()).endswith(" ".join(LONG_MESSAGE.split()))  # whole, wrapped


def test_review_commands_act_on_the_bucket(
    migrated_url: str, filled: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = str(filled["SKU-1"])
    code, out, _ = run(capsys, "review", "reject", one, "--reviewer", "ana", "--comment", "wrong colour", "--catalogue-url", migrated_url)
    assert code == 0 and "needs_review -> rejected" in out and "1 applied" in out
    code, _, err = run(capsys, "review", "approve", one, "--reviewer", "bo", "--catalogue-url", migrated_url)
    assert code == 2 and "comment" in err and "comment_required" in err
    # approving publishes: nothing is staged in this bucket, so publishing fails, naming the cause; no change
    code, _, err = run(capsys, "review", "approve", one, "--reviewer", "bo", "--comment", "colour is right", "--catalogue-url", migrated_url)
    assert code == 2 and "failed [object_missing]" in err and "status unchanged" in err
    assert not list((tmp_path / "bucket").rglob("manifest.json"))
    code, out, _ = run(capsys, "review", "request", one, "--reviewer", "bo", "--comment", "look again", "--json", "--catalogue-url", migrated_url)
    doc = json.loads(out)
    assert code == 0 and doc["counts"]["applied"] == 1
    assert (doc["results"][0]["from_status"], doc["results"][0]["to_status"]) == ("rejected", "needs_review")
    code, _, err = run(capsys, "review", "approve", str(filled["SKU-3"]), "--reviewer", "bo", "--catalogue-url", migrated_url)
    assert code == 2 and "failed_asset" in err
    cat = Catalogue(migrated_url)
    assert cat.get_asset(filled["SKU-1"]).status is AssetStatus.needs_review
    assert [e.reviewer for e in cat.asset_detail(filled["SKU-1"]).reviews] == ["ana", "bo"]
    cat.close()


def test_url_comes_from_the_environment(
    migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSET3D_CATALOGUE_URL", migrated_url)
    code, out, _ = run(capsys, "catalogue", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 3
    code, out, _ = run(capsys, "db", "check")
    assert code == 0


def test_one_catalogue_option_with_a_hidden_alias(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("catalogue", "list"), ("catalogue", "show"), ("review", "approve"), ("db", "upgrade")):
        with pytest.raises(SystemExit):
            cli([*argv, "--help"])
        out = capsys.readouterr().out
        assert "--catalogue-url" in out and "--url" not in out.replace("--catalogue-url", ""), argv


def test_read_only_commands_create_no_database(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASSET3D_CATALOGUE_URL", raising=False)
    monkeypatch.delenv("ASSET3D_DATABASE_URL", raising=False)
    for argv in (("catalogue", "list"), ("catalogue", "stats"), ("catalogue", "show", "1"), ("catalogue", "failures"),
                 ("review", "approve", "1", "--reviewer", "ana"), ("db", "current"), ("db", "check")):  # fmt: skip
        code, _, err = run(capsys, *argv)
        assert code in (1, 2) and "no database file" in err and "asset3d db upgrade" in err, argv
        assert "catalogue: sqlite:///.asset3d/catalogue.db" in err
    assert not (tmp_path / ".asset3d").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ("catalogue", "list"),
        ("catalogue", "show", "1", "--json"),
        ("review", "approve", "1", "--reviewer", "ana"),
        ("db", "current"),
        ("db", "upgrade"),
        ("db", "check"),
    ],
)
def test_passwords_never_reach_the_output(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *argv, "--catalogue-url", UNREACHABLE)
    assert code == 1
    assert SECRET not in out + err
    assert "bot:***@127.0.0.1:1" in err and "unavailable" in err


def test_find_assets_pages_filters_and_metric_names(catalogue: Catalogue) -> None:
    ids = []
    for i, (status, faces) in enumerate((("auto_approved", 10), ("needs_review", 20), ("needs_review", 30), ("rejected", 40))):
        photo = catalogue.upsert_photo(
            f"S{i}", uri=f"s3://p/{i}.png", bucket="p", key=f"{i}.png", sha256=hashlib.sha256(bytes([i])).hexdigest(), size_bytes=1
        )  # fmt: skip
        run_row = catalogue.start_run(model_id="m", weights_sha256=WEIGHTS, pipeline_version="0", parameters={"i": i})
        asset, _ = catalogue.record_asset(
            photo_id=photo.id, run_id=run_row.id, params_hash=params_hash({"i": i}), weights_sha256=WEIGHTS, preset="web",
            status=status, metrics={"asset.faces": faces, "input_view.silhouette_iou": i / 10},
        )  # fmt: skip
        ids.append((asset.id, run_row.id))
    page, total = catalogue.find_assets(limit=2)
    assert total == 4 and [a.id for a in page] == [ids[2][0], ids[1][0]]  # needs_review first, newest first
    rest, _ = catalogue.find_assets(limit=2, offset=2)
    assert [a.id for a in rest] == [ids[3][0], ids[0][0]]
    oldest, _ = catalogue.find_assets(newest_first=False, limit=None)
    assert [a.id for a in oldest] == [ids[1][0], ids[2][0], ids[0][0], ids[3][0]]
    by_run, n = catalogue.find_assets(run_id=ids[3][1])
    assert [a.id for a in by_run] == [ids[3][0]] and n == 1
    big, n = catalogue.find_assets(metric_filters=[MetricFilter("asset.faces", ">", 15)], statuses=["needs_review", "rejected"])
    assert n == 3 and {a.id for a in big} == {ids[1][0], ids[2][0], ids[3][0]}
    assert catalogue.metric_names() == ["asset.faces", "input_view.silhouette_iou"]
