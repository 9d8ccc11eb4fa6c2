"""`asset3d db`, `asset3d catalogue` and `asset3d review` on both engines: tables, JSON, exit codes."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence

import pytest

from asset3d.cli import catalogue as catalogue_cmd
from asset3d.cli import db as db_cmd
from asset3d.cli import review as review_cmd
from storage.catalogue import AssetStatus, Catalogue, params_hash

WEIGHTS = hashlib.sha256(b"w").hexdigest()
SECRET = "hunter2-pw"
UNREACHABLE = f"postgresql+psycopg://bot:{SECRET}@127.0.0.1:1/catalogue?connect_timeout=2"


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
def filled(migrated_url: str) -> dict[str, int]:
    """Three assets: SKU-1 needs review, SKU-2 auto-approved, SKU-3 failed; plus one failure."""
    cat = Catalogue(migrated_url)
    ids = {}
    for sku, status, faces in (("SKU-1", "needs_review", 20000), ("SKU-2", "auto_approved", 60000), ("SKU-3", "failed", 10)):
        photo = cat.upsert_photo(
            sku, uri=f"s3://photos/{sku}/front.png", bucket="photos", key=f"{sku}/front.png",
            sha256=hashlib.sha256(sku.encode()).hexdigest(), size_bytes=100, width=64, height=64,
        )  # fmt: skip
        asset, _ = cat.record_asset(
            photo_id=photo.id, params_hash=params_hash({"preset": "web"}), weights_sha256=WEIGHTS, preset="web",
            status=status, glb_uri=f"s3://assets/{sku}.glb", faces=faces, metrics={"faces": faces},
        )  # fmt: skip
        ids[sku] = asset.id
    cat.record_failure(stage="rembg", reason="empty_mask", message="no foreground found", photo_id=photo.id)
    cat.close()
    return ids


def test_db_commands_round_trip(catalogue_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "db", "check", "--url", catalogue_url)
    assert code == 1 and "upgrade" in err
    code, out, _ = run(capsys, "db", "upgrade", "--url", catalogue_url)
    assert code == 0 and "0001" in out
    code, out, _ = run(capsys, "db", "current", "--url", catalogue_url)
    assert code == 0 and out.startswith("0001 (head)")
    code, out, _ = run(capsys, "db", "check", "--url", catalogue_url)
    assert code == 0 and "models match migrations" in out
    code, out, _ = run(capsys, "db", "downgrade", "base", "--url", catalogue_url)
    assert code == 0 and "at base" in out
    code, out, _ = run(capsys, "db", "current", "--url", catalogue_url)
    assert out.startswith("base")
    code, _, err = run(capsys, "db", "upgrade", "nonexistent-rev", "--url", catalogue_url)
    assert code == 2 and "nonexistent-rev" in err


def test_list_json_and_table(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalogue", "list", "--json", "--url", migrated_url)
    rows = json.loads(out)
    assert code == 0 and isinstance(rows, list)
    assert [(r["id"], r["status"]) for r in rows] == [
        (filled["SKU-1"], "needs_review"), (filled["SKU-2"], "auto_approved"), (filled["SKU-3"], "failed"),
    ]  # fmt: skip
    code, out, _ = run(capsys, "catalogue", "list", "--json", "--sku", "SKU-2", "--url", migrated_url)
    assert [r["sku"] for r in json.loads(out)] == ["SKU-2"]
    code, out, _ = run(capsys, "catalogue", "list", "--json", "--metric", "faces>=15000", "--url", migrated_url)
    assert [r["id"] for r in json.loads(out)] == [filled["SKU-1"], filled["SKU-2"]]
    code, out, _ = run(capsys, "catalogue", "list", "--status", "failed", "--url", migrated_url)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["id", "status", "sku", "ver", "preset", "created", "(UTC)", "faces", "glb"]
    assert len(lines) == 3 and "SKU-3" in lines[2] and "failed" in lines[2]
    status_col = lines[0].index("status")
    assert lines[2][status_col:].startswith("failed")  # columns line up under their headers
    code, out, _ = run(capsys, "catalogue", "list", "--sku", "NOPE", "--url", migrated_url)
    assert code == 0 and "no assets" in out
    code, _, err = run(capsys, "catalogue", "list", "--status", "published", "--url", migrated_url)
    assert code == 2 and "'published' is not one of" in err


def test_show_json_table_and_unknown_id(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalogue", "show", str(filled["SKU-1"]), "--json", "--url", migrated_url)
    obj = json.loads(out)
    assert code == 0 and obj["asset"]["id"] == filled["SKU-1"] and obj["asset"]["status"] == "needs_review"
    assert obj["photo"]["uri"] == "s3://photos/SKU-1/front.png" and obj["metrics"]["faces"]["value"] == 20000
    assert obj["reviews"] == []
    code, out, _ = run(capsys, "catalogue", "show", str(filled["SKU-1"]), "--url", migrated_url)
    assert code == 0 and "s3://assets/SKU-1.glb" in out and "needs_review" in out
    code, out, err = run(capsys, "catalogue", "show", "987654", "--url", migrated_url)
    assert code == 2 and out == "" and "no asset with id 987654" in err


def test_stats_and_failures(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "catalogue", "stats", "--json", "--url", migrated_url)
    stats = json.loads(out)
    assert code == 0 and stats["total"] == 3
    assert stats["counts"]["needs_review"] == 1 and stats["counts"]["superseded"] == 0
    assert stats["metrics"]["faces"]["count"] == 3 and stats["metrics"]["faces"]["median"] == 20000
    code, out, _ = run(capsys, "catalogue", "stats", "--url", migrated_url)
    assert code == 0 and "needs_review" in out and "p95" in out
    code, out, _ = run(capsys, "catalogue", "failures", "--json", "--url", migrated_url)
    failures = json.loads(out)
    assert [(f["stage"], f["reason"]) for f in failures] == [("rembg", "empty_mask")] and "id" in failures[0]
    code, out, _ = run(capsys, "catalogue", "failures", "--since", "2999-01-01", "--json", "--url", migrated_url)
    assert json.loads(out) == []
    code, out, _ = run(capsys, "catalogue", "failures", "--url", migrated_url)
    assert "empty_mask" in out and "SKU-3" in out


def test_review_commands(migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    one = str(filled["SKU-1"])
    code, out, _ = run(capsys, "review", "reject", one, "--reviewer", "ana", "--comment", "wrong colour", "--url", migrated_url)
    assert code == 0 and "needs_review -> rejected" in out
    code, _, err = run(capsys, "review", "approve", one, "--reviewer", "bo", "--url", migrated_url)
    assert code == 2 and "comment" in err and "comment_required" in err
    code, out, _ = run(
        capsys, "review", "approve", one, "--reviewer", "bo", "--comment", "colour is right", "--json", "--url", migrated_url
    )
    event = json.loads(out)
    assert code == 0 and (event["from_status"], event["to_status"], event["reviewer"]) == ("rejected", "approved", "bo")
    code, _, err = run(capsys, "review", "approve", str(filled["SKU-3"]), "--reviewer", "bo", "--url", migrated_url)
    assert code == 2 and "failed" in err
    code, _, err = run(capsys, "review", "approve", "424242", "--reviewer", "bo", "--url", migrated_url)
    assert code == 2 and "no asset with id 424242" in err
    cat = Catalogue(migrated_url)
    assert cat.get_asset(filled["SKU-1"]).status is AssetStatus.approved
    assert len(cat.asset_detail(filled["SKU-1"]).reviews) == 2
    cat.close()


def test_url_comes_from_the_environment(
    migrated_url: str, filled: dict[str, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSET3D_CATALOGUE_URL", migrated_url)
    code, out, _ = run(capsys, "catalogue", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 3
    code, out, _ = run(capsys, "db", "check")
    assert code == 0


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
    code, out, err = run(capsys, *argv, "--url", UNREACHABLE)
    assert code == 1
    assert SECRET not in out + err
    assert "bot:***@127.0.0.1:1" in err and "unavailable" in err
