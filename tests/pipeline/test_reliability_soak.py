"""Fault suite, soak: 500 photos with the tiny model through ``convert_batch``, watched from outside.

``asset3d run-batch`` (the `convert_batch` flow on a temporary Prefect server the command owns) converts 500
distinct photos into a local folder bucket with a SQLite catalogue. The test samples the flow process every
second from ``/proc`` -- resident memory, threads, open files -- and counts the manifests published so far.
It asserts that the batch completes with every photo published once, that threads and open files stay
under fixed bounds, that the counts add up, and that the resident memory after 500 photos is within 10 % of
what it was after 50 (each taken as the highest sample over ten photos).

About 4 minutes on a 2-core machine: marked ``soak``, which ``make test`` leaves out (``pytest -m soak``
runs it). The figures of the last run are in ``docs/reliability.md``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import assert_counts, assert_published_once

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.soak, pytest.mark.timeout(2400)]

#: ``ASSET3D_SOAK_PHOTOS`` shortens the soak for a quick look while working (the goal is stated for 500).
PHOTOS = int(os.environ.get("ASSET3D_SOAK_PHOTOS", "500"))
EARLY = 50
#: Photos over which "RSS after n photos" is taken (samples are a second apart, a few photos each).
WINDOW = 10
#: RSS after all photos may exceed RSS after `EARLY` photos by this fraction at most.
RSS_GROWTH = 0.10
#: The flow process's threads: the task pool (STEP_THREADS), Prefect's services, torch's pool, the server
#: client; not one per photo.
MAX_THREADS = 64
#: Open file descriptors of the flow process: sockets to the server, the catalogue, libraries; not per photo.
MAX_OPEN_FILES = 256
SHARED_PHOTOS = ("chair.png", "robot.png", "hamburger.png", "flor.png", "teapot.png")


@dataclass
class Sample:
    t: float
    published: int
    rss_mb: float
    threads: int
    open_files: int


def _make_photos(root: Path, shared: Path, n: int) -> list[Path]:
    """``n`` distinct 256 px photos (the shared ones, each copy made unique by a text chunk), a SKU each."""
    from PIL import Image, PngImagePlugin

    sources = [Image.open(shared / "photos" / name).convert("RGBA").resize((256, 256)) for name in SHARED_PHOTOS]
    out = []
    for i in range(n):
        info = PngImagePlugin.PngInfo()
        info.add_text("soak", str(i))
        buf = io.BytesIO()
        sources[i % len(sources)].save(buf, "PNG", pnginfo=info, compress_level=1)
        path = root / f"SKU-{i:04d}" / f"photo{i % len(sources)}.png"
        path.parent.mkdir(parents=True)
        path.write_bytes(buf.getvalue())
        out.append(path)
    return out


def _sample(pid: int, dest: Path, t0: float) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields["VmRSS"].split()[0])
    published = sum(1 for _ in dest.glob("SKU-*/*/manifest.json")) if dest.exists() else 0
    return Sample(time.monotonic() - t0, published, rss_kb / 1024, int(fields["Threads"]), fds)


def _watch(proc: subprocess.Popen[bytes], dest: Path, samples: list[Sample]) -> None:
    t0 = time.monotonic()
    while proc.poll() is None:
        s = _sample(proc.pid, dest, t0)
        if s is not None:
            samples.append(s)
        time.sleep(1.0)


def test_soak_500_photos_memory_flat_threads_and_files_bounded(tmp_path: Path, shared: Path, fast_options: dict[str, Any]) -> None:
    import yaml

    root, dest = tmp_path / "photos", tmp_path / "assets"
    photos = _make_photos(root, shared, PHOTOS)
    config = tmp_path / "asset3d.yaml"
    config.write_text(yaml.safe_dump({**fast_options, "batch_size": 8}))
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"ASSET3D_CATALOGUE_URL": url, "PREFECT_LOGGING_LEVEL": "WARNING", "TMPDIR": str(tmp_path)})
    argv = [sys.executable, "-m", "asset3d", "run-batch", str(root), "--dest", str(dest), "--config", str(config), "--json"]
    samples: list[Sample] = []
    t0 = time.monotonic()
    with (tmp_path / "out.json").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        watcher = threading.Thread(target=_watch, args=(proc, dest, samples), daemon=True)
        watcher.start()
        try:
            proc.wait(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
        watcher.join(timeout=10)
    wall = time.monotonic() - t0
    stderr = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())

    assert_counts(report, photos=PHOTOS)
    assert report["counts"]["published"] == PHOTOS, report["counts"]
    assert_published_once(str(dest), url, [p.as_uri() for p in photos])

    # "RSS after n photos": the highest sample while photos n to n + WINDOW were published, the same on both
    # sides (one sample against the highest of a window would count the sawtooth of the allocator as growth)
    early = [s for s in samples if EARLY <= s.published < EARLY + WINDOW]
    late = [s for s in samples if s.published >= PHOTOS - WINDOW]
    assert early and late, f"no sample around {EARLY} or after {PHOTOS - WINDOW} photos: {samples[-3:]}"
    rss_early, rss_late = max(s.rss_mb for s in early), max(s.rss_mb for s in late)
    checkpoints = {n: round(max(s.rss_mb for s in samples if s.published <= n)) for n in (50, 100, 200, 300, 400, 500) if n <= PHOTOS}
    peak_threads = max(s.threads for s in samples)
    peak_files = max(s.open_files for s in samples)
    figures = {
        "photos": PHOTOS, "wall_s": round(wall, 1), "photos_per_minute": round(PHOTOS / wall * 60, 1),
        f"rss_mb_after_{EARLY}": round(rss_early), f"rss_mb_after_{PHOTOS}": round(rss_late),
        "rss_growth": round(rss_late / rss_early - 1, 3), "rss_mb_peak": round(max(s.rss_mb for s in samples)),
        "rss_mb_peak_by_photos": checkpoints,
        "threads_peak": peak_threads, "open_files_peak": peak_files,
    }  # fmt: skip
    print("soak:", json.dumps(figures))
    assert peak_threads <= MAX_THREADS, figures
    assert peak_files <= MAX_OPEN_FILES, figures
    assert rss_late <= rss_early * (1 + RSS_GROWTH), figures
