"""Fault suite: S3 answers that go wrong, through the loopback proxy in front of moto (`S3FaultProxy`).

* every fault kind -- 503, 500, a connection reset, a body cut short, a stalled answer -- at each S3 call the
  pipeline makes: the download of a photo (``get``), the upload of a GLB (``put``) and the listing of the
  source (``list``), once each: retried (by botocore or by the step), nothing lost;
* a photo whose download keeps answering 500: it fails after its retries (2 botocore attempts x 4 step
  attempts), the others are published;
* a 403 at a download and at an upload: never retried;
* a photo whose download stalls for good: it fails on ``timeout`` within the fetch deadline, the step not
  retried past it, while the other photos are published meanwhile (inline runner and Prefect tasks).

Batches run with `convert_local` (the inline runner) unless they say otherwise; S3 is reached with the
stores' own defaults (``storage.s3``: 10 s read timeout, 2 attempts), so a stalled answer costs 10 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import Reset, Rule, S3FaultProxy, Stall, Truncate, upload_photos
from reliability_helpers import assert_consistent, assert_counts, assert_no_secret, assert_published_once

from asset3d.cli.convert import convert_local
from asset3d.pipeline.settings import load_settings
from storage.catalogue import AssetStatus, Catalogue

pytestmark = pytest.mark.reliability

PHOTOS = ("chair.png", "robot.png", "hamburger.png")
#: The secret key the stores sign with in these tests (moto takes any): it must appear nowhere.
SECRET = "s3-fault-suite-" + uuid.uuid4().hex


class Batch:
    """Three photos in a bucket behind a fault proxy; `run` converts them and keeps what it needs to check."""

    def __init__(self, s3_endpoint: str, s3: Any, bucket: str, photos: dict[str, bytes], tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
        self.endpoint, self.bucket, self.mp = s3_endpoint, bucket, mp
        self.keys = upload_photos(s3, bucket, {n: photos[n] for n in PHOTOS})
        self.source, self.dest = f"s3://{bucket}/incoming", f"s3://{bucket}/assets"
        self.url = f"sqlite:///{tmp_path / 'catalogue.db'}"
        self.proxy: S3FaultProxy | None = None

    def path(self, name: str) -> str:
        """The proxy's path of a photo's download."""
        return f"/{self.bucket}/{self.keys[name]}"

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.keys[name]}"

    def run(self, rule: Rule, options: dict[str, Any]) -> dict[str, Any]:
        self.proxy = S3FaultProxy(self.endpoint, rule).start()
        try:
            self.mp.setenv("AWS_ENDPOINT_URL", self.proxy.url)
            self.mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
            settings = load_settings(**{**options, "dest": self.dest, "catalogue_url": self.url})
            return convert_local(self.source, settings).as_dict()
        finally:
            self.proxy.stop()
            self.mp.setenv("AWS_ENDPOINT_URL", self.endpoint)  # the checks read S3 directly

    def seen(self, method: str, path: str) -> int:
        assert self.proxy is not None
        return self.proxy.seen[(method, path)]

    def glb_puts(self) -> dict[str, int]:
        """Requests seen per GLB upload path."""
        assert self.proxy is not None
        return {p: n for (m, p), n in self.proxy.seen.items() if m == "PUT" and p.endswith("/model.glb")}


@pytest.fixture
def batch(s3_endpoint: str, s3: Any, bucket: str, photo_bytes: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Batch]:
    yield Batch(s3_endpoint, s3, bucket, photo_bytes, tmp_path, monkeypatch)


def _invariants(batch: Batch, report: dict[str, Any], published: tuple[str, ...], texts: tuple[str, ...] = ()) -> None:
    """Counts add up, the good photos are published once, nothing half-visible, no secret anywhere."""
    import json

    assert_counts(report, photos=len(PHOTOS))
    assert report["counts"]["published"] == len(published), report["photos"]
    assert_published_once(batch.dest, batch.url, [batch.uri(n) for n in published])
    assert_consistent(batch.dest, batch.url)
    assert_no_secret([SECRET], texts=(json.dumps(report), *texts), catalogue_url=batch.url, dest=batch.dest)


FAULTS: dict[str, Any] = {
    "503": (503, "ServiceUnavailable"),
    "500": (500, "InternalError"),
    "reset": Reset(),
    "truncated": Truncate(0.5),
    "stalled": Stall(60.0),  # the client's read timeout (10 s) ends it
}


class TestOneFaultAtEachCall:
    """Each fault once at each call: the call is retried and every photo is published."""

    @pytest.mark.parametrize("fault", list(FAULTS))
    @pytest.mark.parametrize("call", ["get", "put", "list"])
    def test_fault_is_retried_and_nothing_is_lost(
        self, batch: Batch, fast_options: dict[str, Any], call: str, fault: str, capfd: pytest.CaptureFixture[str]
    ) -> None:
        answer = FAULTS[fault]
        photo_paths = {batch.path(n) for n in PHOTOS}
        listing = f"/{batch.bucket}"

        def rule(method: str, path: str, nth: int) -> Any:
            if nth > 0:
                return None
            if call == "get" and method == "GET" and path in photo_paths:
                return answer
            if call == "put" and method == "PUT" and path.endswith("/model.glb"):
                return answer
            if call == "list" and method == "GET" and path == listing:
                return answer
            return None

        t0 = time.monotonic()
        report = batch.run(rule, fast_options)
        wall = time.monotonic() - t0
        out, err = capfd.readouterr()
        _invariants(batch, report, PHOTOS, (out, err))
        assert batch.proxy is not None
        injected = batch.proxy.injected
        if call == "get":
            assert len(injected) == len(PHOTOS)
            assert all(batch.seen("GET", p) == 2 for p in photo_paths)  # failed once, retried once
        elif call == "put":
            puts = batch.glb_puts()
            assert len(puts) == len(PHOTOS) and len(injected) == len(PHOTOS)
            # a PUT whose answer is cut short still wrote the object and the client takes its headers: not retried
            expected = 1 if fault == "truncated" else 2
            assert set(puts.values()) == {expected}, puts
        else:
            assert len(injected) == 1 and batch.seen("GET", listing) >= 2
        if fault == "stalled":
            assert wall >= 10.0  # the stalled answer cost one read timeout, then the retry went through
        # the failure was retried, so no failure row is left behind
        cat = Catalogue(batch.url)
        try:
            assert cat.failures_since() == []
        finally:
            cat.close()


def test_persistent_500_on_one_photo_fails_it_after_its_retries(batch: Batch, fast_options: dict[str, Any]) -> None:
    broken = batch.path("chair.png")

    def rule(method: str, path: str, nth: int) -> Any:
        return (500, "InternalError") if method == "GET" and path == broken else None

    report = batch.run(rule, fast_options)
    _invariants(batch, report, ("robot.png", "hamburger.png"))
    # 2 botocore attempts for each of the step's 1 + retries attempts
    assert batch.seen("GET", broken) == 2 * (1 + load_settings(**fast_options).retries) == 8
    row = next(r for r in report["photos"] if r["uri"] == batch.uri("chair.png"))
    assert (row["status"], row["stage"], row["reason"]) == ("failed", "fetch", "server_error")
    cat = Catalogue(batch.url)
    try:  # a transient failure: a failure row, no failed asset, so the next run tries the photo again
        assert [(f.stage, f.reason) for f in cat.failures_since()] == [("fetch", "server_error")]
        assert not [a for a in cat.review_queue(statuses=list(AssetStatus), limit=None) if a.sku == "SKU-chair"]
    finally:
        cat.close()


def test_403_is_never_retried(batch: Batch, fast_options: dict[str, Any]) -> None:
    denied_get = batch.path("robot.png")

    def rule(method: str, path: str, nth: int) -> Any:
        if method == "GET" and path == denied_get:
            return (403, "AccessDenied")
        if method == "PUT" and "/SKU-hamburger/" in path and path.endswith("/model.glb"):
            return (403, "AccessDenied")
        return None

    report = batch.run(rule, fast_options)
    _invariants(batch, report, ("chair.png",))
    assert batch.seen("GET", denied_get) == 1
    assert list(batch.glb_puts().values()).count(1) >= 1
    denied_put = [p for p in batch.glb_puts() if "/SKU-hamburger/" in p]
    assert len(denied_put) == 1 and batch.seen("PUT", denied_put[0]) == 1
    rows = {r["uri"]: r for r in report["photos"]}
    assert (rows[batch.uri("robot.png")]["stage"], rows[batch.uri("robot.png")]["reason"]) == ("fetch", "accessdenied")
    assert (rows[batch.uri("hamburger.png")]["stage"], rows[batch.uri("hamburger.png")]["reason"]) == ("publish", "accessdenied")


# -- time bounds -------------------------------------------------------------------------------------------------

#: The fetch deadline of the stall tests: room for two stalled attempts of one read timeout (10 s) each.
DEADLINE_S = 25.0


def _stalled(batch: Batch) -> tuple[Rule, list[float]]:
    """A rule that stalls every download of chair.png, and the times those downloads began."""
    stalled = batch.path("chair.png")
    starts: list[float] = []

    def rule(method: str, path: str, nth: int) -> Any:
        if method == "GET" and path == stalled:
            starts.append(time.monotonic())
            return Stall(120.0)
        return None

    return rule, starts


def _check_stalled(batch: Batch, report: dict[str, Any], starts: list[float], t0: float) -> None:
    _invariants(batch, report, ("robot.png", "hamburger.png"))
    row = next(r for r in report["photos"] if r["uri"] == batch.uri("chair.png"))
    assert (row["status"], row["stage"], row["reason"]) == ("failed", "fetch", "timeout"), row
    assert "read timeout" in row["message"]
    # two attempts of 10 s fit the 25 s deadline, a third would not: the step stopped retrying (retries=3)
    assert len(starts) == 2, starts
    cat = Catalogue(batch.url)
    try:
        (failure,) = cat.failures_since()
        published = [a for a in cat.review_queue(limit=None) if a.published_at is not None]
    finally:
        cat.close()
    # the photo failed within the deadline of its first attempt ...
    assert starts[-1] - starts[0] + 10.0 <= DEADLINE_S
    assert time.monotonic() - t0 < DEADLINE_S + 20.0
    # ... while the other photos went through: published before it failed (their micro-batch of 3 waited
    # ``batch_wait_s`` for the stalled photo, then went without it)
    assert len(published) == 2 and all(a.published_at <= failure.created_at for a in published)


def test_a_stalled_download_fails_its_photo_within_the_fetch_deadline(batch: Batch, fast_options: dict[str, Any]) -> None:
    rule, starts = _stalled(batch)
    batch.mp.setenv("AWS_MAX_ATTEMPTS", "1")  # one read timeout per step attempt: the deadline decides the rest
    t0 = time.monotonic()
    report = batch.run(rule, {**fast_options, "deadline_fetch_s": DEADLINE_S, "batch_wait_s": 2.0})
    _check_stalled(batch, report, starts, t0)


@pytest.mark.usefixtures("prefect_harness", "result_cache")
def test_a_stalled_download_fails_within_the_deadline_through_prefect(
    batch: Batch, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through `convert_batch`: the task's retry condition (`tasks.policy.DeadlineRetry`) stops it."""
    from flows.convert import convert_batch

    rule, starts = _stalled(batch)
    monkeypatch.setenv("ASSET3D_CONFIG", str(config_file))
    monkeypatch.setenv("ASSET3D_DEADLINE_FETCH_S", str(DEADLINE_S))
    monkeypatch.setenv("ASSET3D_BATCH_WAIT_S", "2")  # the two good photos do not wait for the stalled one
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    batch.proxy = S3FaultProxy(batch.endpoint, rule).start()
    t0 = time.monotonic()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", batch.proxy.url)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        report = convert_batch(batch.source, dest=batch.dest, catalogue_url=batch.url)
    finally:
        batch.proxy.stop()
        monkeypatch.setenv("AWS_ENDPOINT_URL", batch.endpoint)
    _check_stalled(batch, report, starts, t0)
