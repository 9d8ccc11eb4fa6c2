"""`asset3d review` on several assets: each decided on its own, one failure stops nothing, exit 2, a summary;
on SQLite and PostgreSQL over a catalogue made by ``asset3d convert``."""

from __future__ import annotations

import json

import pytest
from web_helpers import Converted, assert_manifest_matches, manifest_of, reviews_of, status_of

from asset3d.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bulk_approve_with_one_bad_id_applies_the_others(converted: Converted, capsys: pytest.CaptureFixture[str]) -> None:
    chair, teapot = converted.ids["chair"], converted.ids["teapot"]
    code, out, err = run(
        capsys, "review", "approve", str(chair), "987654", str(teapot), "--reviewer", "ana", "--comment", "batch ok",
        "--catalogue-url", converted.url,
    )  # fmt: skip
    assert code == 2
    assert "approve: 3 assets: 2 applied (2 published), 1 not found" in out
    assert f"asset {chair}: needs_review -> approved" in out and "published" in out
    assert "asset 987654: not found [not_found]" in err and "catalogue: " in err
    for sku in ("chair", "teapot"):
        assert status_of(converted.url, converted.ids[sku]) == "approved"
        assert_manifest_matches(converted.folder(sku))
        (event,) = reviews_of(converted.url, converted.ids[sku])
        assert (event.reviewer, event.comment) == ("ana", "batch ok")

    # again, as JSON: both refused now (already approved), the unknown one still unknown
    code, out, _ = run(capsys, "review", "approve", str(chair), str(teapot), "987654", "--reviewer", "ana", "--json",
                       "--catalogue-url", converted.url)  # fmt: skip
    doc = json.loads(out)
    assert code == 2 and doc["counts"] == {"applied": 0, "would_apply": 0, "refused": 2, "not_found": 1, "failed": 0}
    assert [r["reason"] for r in doc["results"]] == ["no_change", "no_change", "not_found"]

    # reject both by filter: the manifests go, the summary counts them
    code, out, _ = run(capsys, "review", "reject", "--status", "approved", "--sku", "chair", "--reviewer", "bo",
                       "--comment", "colour off", "--catalogue-url", converted.url)  # fmt: skip
    assert code == 0 and "reject: 1 asset: 1 applied" in out and "unpublished" in out
    assert manifest_of(converted.folder("chair")) is None and manifest_of(converted.folder("teapot")) is not None


def test_filters_dry_run_and_refusals(converted: Converted, capsys: pytest.CaptureFixture[str]) -> None:
    cerebro = converted.ids["cerebro"]
    url = converted.url
    code, out, _ = run(capsys, "review", "reject", "--sku", "cerebro", "--metric", "asset.faces>=1", "--dry-run",
                       "--catalogue-url", url)  # fmt: skip
    assert code == 0 and f"asset {cerebro}: would go needs_review -> rejected" in out and "1 would apply" in out
    assert status_of(url, cerebro) == "needs_review" and reviews_of(url, cerebro) == []  # nothing changed

    code, _, err = run(capsys, "review", "reject", "--metric", "faces>=1", "--reviewer", "bo", "--catalogue-url", url)
    assert code == 2 and "unknown metric 'faces'" in err and "asset.faces" in err
    code, _, err = run(capsys, "review", "reject", "--reviewer", "bo", "--catalogue-url", url)
    assert code == 2 and "asset ids, or a filter" in err
    code, _, err = run(capsys, "review", "reject", str(cerebro), "--catalogue-url", url)
    assert code == 2 and "--reviewer" in err
    code, out, _ = run(capsys, "review", "reject", "--sku", "nobody", "--reviewer", "bo", "--catalogue-url", url)
    assert code == 0 and "nothing matched" in out
