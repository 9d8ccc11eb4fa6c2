"""The review app's parts on their own: reviewer tokens, sessions and CSRF tokens, the gate's reasons as
reviewers see them, bucket roots, and `asset3d serve`'s reviewer commands and help."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from asset3d.cli import main
from asset3d.web.files import Buckets, OutsideBuckets
from asset3d.web.present import failing_metrics, gate_view, reason_of, unknown_metric_message
from asset3d.web.reviewers import ReviewerError, Reviewers, add_reviewer, remove_reviewer
from asset3d.web.security import (
    AuthError,
    CsrfRefused,
    check_csrf,
    from_header,
    from_session,
    make_session,
    new_csrf,
    read_session,
)
from asset3d.web.settings import ServeSettings
from storage.catalogue import MetricFilter

KEY = b"k" * 32


def test_reviewer_tokens_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "r" / "reviewers.json"
    token = add_reviewer(path, "ana")
    text = path.read_text()
    assert token not in text and "token_sha256" in text  # never the token itself
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rv = Reviewers(path)
    assert rv.by_token(token) == "ana" and rv.by_token(token + "x") is None
    assert rv.check("ana", token) and not rv.check("bo", token) and not rv.check("ana", "")
    old_fingerprint = rv.fingerprint("ana")
    new = add_reviewer(path, "ana")  # a new token replaces the old one (re-read without a restart)
    assert rv.by_token(token) is None and rv.by_token(new) == "ana" and rv.fingerprint("ana") != old_fingerprint
    assert remove_reviewer(path, "ana") and rv.by_token(new) is None and not remove_reviewer(path, "ana")
    with pytest.raises(ReviewerError):
        add_reviewer(path, "ana smith")


def test_credentials_from_headers(tmp_path: Path) -> None:
    import base64

    path = tmp_path / "reviewers.json"
    token = add_reviewer(path, "ana")
    rv = Reviewers(path)
    assert from_header(None, rv) is None
    assert from_header(f"Bearer {token}", rv).reviewer == "ana"  # type: ignore[union-attr]
    good = base64.b64encode(f"ana:{token}".encode()).decode()
    assert from_header(f"Basic {good}", rv).via == "basic"  # type: ignore[union-attr]
    for bad in ("Bearer nope", "Basic !!!", "Basic " + base64.b64encode(b"ana:nope").decode(), "Digest x=1"):
        with pytest.raises(AuthError):
            from_header(bad, rv)


def test_sessions_are_signed_expire_and_end_with_the_token(tmp_path: Path) -> None:
    path = tmp_path / "reviewers.json"
    add_reviewer(path, "ana")
    rv = Reviewers(path)
    cookie = make_session(KEY, "ana", rv.fingerprint("ana") or "", now=1000.0)
    assert read_session(KEY, cookie, max_age_s=60, now=1030.0) == ("ana", rv.fingerprint("ana"))
    assert read_session(KEY, cookie, max_age_s=60, now=1100.0) is None  # expired
    assert read_session(b"other-key" * 4, cookie, max_age_s=60, now=1030.0) is None
    payload, mac = cookie.split(".")
    tampered = base64_json({"r": "bo", "f": "x", "t": 1000}) + "." + mac
    assert read_session(KEY, tampered, max_age_s=60, now=1030.0) is None
    fresh = make_session(KEY, "ana", rv.fingerprint("ana") or "")
    assert from_session(fresh, rv, KEY, max_age_s=60).reviewer == "ana"  # type: ignore[union-attr]
    add_reviewer(path, "ana")  # a new token ends the old sessions
    assert from_session(fresh, rv, KEY, max_age_s=60) is None


def base64_json(doc: dict) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_csrf_tokens() -> None:
    token = new_csrf(KEY)
    check_csrf(KEY, token, token)
    for cookie, field in ((token, None), (None, token), (token, new_csrf(KEY)), ("a.b", "a.b"), (token, token + "x")):
        with pytest.raises(CsrfRefused):
            check_csrf(KEY, cookie, field)


def test_gate_reasons_dicts_and_older_strings() -> None:
    gate = {
        "decision": "needs_review",
        "reasons": [
            {"rule": "approve_min_silhouette_iou", "threshold": 0.9, "value": 0.41, "message": "silhouette IoU 0.410 < 0.9"},
            "seam colour jump p95 30.0/255 > 12.0 (approve_max_seam_p95)",
            "intake flag clipped",
        ],
        "notes": ["unscaled: no product dimensions, the model's own size is written as metres"],
        "intake": {"flags": {"clipped": True, "tiny_object": False, "foreground_fraction": 0.2}},
    }
    view = gate_view(gate)
    assert view.recorded and view.decision == "needs_review" and view.unscaled
    assert [r.rule for r in view.reasons] == ["approve_min_silhouette_iou", "approve_max_seam_p95", None]
    assert view.reasons[0].line() == "approve_min_silhouette_iou: value 0.41, threshold 0.9: silhouette IoU 0.410 < 0.9"
    assert view.intake_flags == ("clipped",) and view.first_reason == "silhouette IoU 0.410 < 0.9 (+2 more)"
    assert gate_view({"decision": "rejected", "reasons": [], "intake": {"flags": ["no_object"]}}).intake_flags == ("no_object",)
    assert not gate_view(None).recorded and gate_view(None).first_reason is None
    names = ["input_view.silhouette_iou", "seams.p95_abs", "asset.faces"]
    assert set(failing_metrics(view.reasons, names)) == {"input_view.silhouette_iou", "seams.p95_abs"}
    assert reason_of("plain").rule is None


def test_unknown_metric_names_list_the_known_ones() -> None:
    known = ["asset.faces", "input_view.silhouette_iou", "source.faces"]
    assert unknown_metric_message([MetricFilter("asset.faces", "<=", 5)], known) is None
    message = unknown_metric_message([MetricFilter("faces", "<=", 5)], known)
    assert message and "did you mean asset.faces, source.faces" in message and "input_view.silhouette_iou" in message


def test_bucket_roots_refuse_everything_outside(tmp_path: Path, aws_env: None) -> None:
    buckets = Buckets([str(tmp_path / "assets"), "s3://shop/assets"])
    root = (tmp_path / "assets").resolve().as_uri()
    assert buckets.locate(f"{root}/sku/k/model.glb").key == "sku/k/model.glb"
    assert buckets.locate("s3://shop/assets/sku/k/model.glb").key == "sku/k/model.glb"
    for uri in (
        f"{root}/../x/model.glb", f"{root}/%2e%2e/x", f"{root}/sku//x", f"{root}x/model.glb", f"{root}/sku/k/a?b=1",
        "s3://shop/assetsX/a.glb", "s3://shop/other/a.glb", "s3://evil/assets/a.glb", "http://example.com/a.glb",
        "file:///etc/passwd", f"{root}/.asset3d-meta/sku/k/model.glb.json",
    ):  # fmt: skip
        with pytest.raises(OutsideBuckets):
            buckets.locate(uri)


def test_serve_add_reviewer_prints_the_token_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reviewers.json"
    assert main(["serve", "--add-reviewer", "ana", "--reviewers-file", str(path)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("a3r_") and "only time" in err and token not in path.read_text()
    assert Reviewers(path).by_token(token) == "ana"
    assert main(["serve", "--list-reviewers", "--reviewers-file", str(path)]) == 0
    assert capsys.readouterr().out.split() == ["ana"]
    assert main(["serve", "--remove-reviewer", "bo", "--reviewers-file", str(path)]) == 2


def test_serve_refuses_a_catalogue_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.db"
    assert main(["serve", "--catalogue-url", f"sqlite:///{missing}", "--bucket", str(tmp_path), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert f"catalogue: sqlite:///{missing}" in err and "no database file" in err and not missing.exists()


def test_serve_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for name in ServeSettings.model_fields:
        assert f"ASSET3D_SERVE_{name.upper()}" in out, name
    assert "127.0.0.1" in out and "--add-reviewer" in out
