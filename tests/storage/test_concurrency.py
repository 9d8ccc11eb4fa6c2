"""Two real processes recording conversions at the same moment, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import traceback
from multiprocessing.synchronize import Barrier

from sqlalchemy import func, select

from storage.catalogue import Catalogue, params_hash
from storage.catalogue.models import Asset

WEIGHTS = hashlib.sha256(b"weights").hexdigest()
ROUNDS = 6


def _worker(url: str, photo_id: int, hashes: list[str], barrier: Barrier, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Record one conversion per round, each round started in lock-step with the other process."""
    try:
        cat = Catalogue(url)
        results = []
        for h in hashes:
            barrier.wait(timeout=60)
            asset, created = cat.record_asset(photo_id=photo_id, params_hash=h, weights_sha256=WEIGHTS, preset="web")
            results.append((asset.id, created, asset.version))
        cat.close()
        out.put(("ok", results))
    except BaseException:  # noqa: B036 - reported to the parent, which fails the test with it
        out.put(("error", traceback.format_exc()))


def _run_pair(url: str, photo_id: int, hashes_a: list[str], hashes_b: list[str]) -> tuple[list, list]:  # type: ignore[type-arg]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, photo_id, h, barrier, out)) for h in (hashes_a, hashes_b)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    errors = [r[1] for r in reports if r[0] != "ok"]
    assert not errors, errors[0]
    return reports[0][1], reports[1][1]


def _photo(url: str) -> int:
    cat = Catalogue(url)
    photo = cat.upsert_photo(
        "SKU-1", uri="s3://photos/SKU-1/front.png", bucket="photos", key="SKU-1/front.png",
        sha256=hashlib.sha256(b"front").hexdigest(), size_bytes=10,
    )  # fmt: skip
    cat.close()
    return photo.id


def _asset_rows(url: str) -> int:
    cat = Catalogue(url)
    with cat.engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(Asset))
    cat.close()
    return int(n or 0)


def test_same_conversion_from_two_processes_is_one_asset(migrated_url: str) -> None:
    photo_id = _photo(migrated_url)
    hashes = [params_hash({"preset": "web", "round": i}) for i in range(ROUNDS)]
    a, b = _run_pair(migrated_url, photo_id, hashes, hashes)
    for (id_a, created_a, _), (id_b, created_b, _) in zip(a, b, strict=True):
        assert id_a == id_b  # both processes got the same asset
        assert created_a != created_b  # exactly one of them wrote it
    assert _asset_rows(migrated_url) == ROUNDS


def test_different_conversions_of_one_photo_at_once_get_distinct_versions(migrated_url: str) -> None:
    photo_id = _photo(migrated_url)
    a, b = _run_pair(
        migrated_url,
        photo_id,
        [params_hash({"preset": "web", "round": i}) for i in range(ROUNDS)],
        [params_hash({"preset": "marketplace", "round": i}) for i in range(ROUNDS)],
    )
    assert all(created for _, created, _ in a + b)
    versions = sorted(v for _, _, v in a + b)
    assert versions == list(range(1, 2 * ROUNDS + 1))  # no clash, no gap: the loser of a race retried
    assert _asset_rows(migrated_url) == 2 * ROUNDS
