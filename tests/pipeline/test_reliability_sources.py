"""Fault suite: a local source folder with unsafe keys, symlinks and hard links: nothing read or written outside
the roots (the source folder, the destination folder).

* one batch over a source folder whose good photos (one with an odd but safe name) sit beside a symlink to a
  photo outside, a symlinked folder pointing outside, a hard link to a photo outside, file and folder names
  that are no safe key (a backslash, a control character, ``..`` after percent-decoding), a SKU folder named
  ``...``, and sidecar SKUs ``..`` and ``../outside``; the destination has a SKU folder that is a symlink out:
  the good photos are published once; each unsafe key or SKU is a failure row naming it, the photo bound
  for the symlinked destination folder too; the symlinks are not objects of the source (never listed, never
  opened); nothing in or out of the roots changes but the destination and the catalogue; no byte of the
  files outside reaches the destination or the catalogue;
* a list of photo URIs through `convert_batch` on a worker with ``allowed_sources``: a URI that is a symlink
  out, lies in a symlinked folder, or climbs out with ``..`` refuses the whole run before anything is read.

A hard link is a name inside the root for the same file: no path leads out of the root through it, the store
cannot tell it from a copy, and writes never go through it (the local store writes a temporary file and
renames it over the name). It is read as the root's own photo: that is the documented behaviour asserted here,
with the file it shares left untouched.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import assert_consistent, assert_counts, assert_published_once

from asset3d.cli.convert import convert_local
from asset3d.pipeline.settings import load_settings
from storage.catalogue import Catalogue

pytestmark = pytest.mark.reliability

#: In the bytes of every file outside the roots: it must turn up in no object and no catalogue row.
MARKER = "outside-the-roots-" + uuid.uuid4().hex


# -- what the process opens ------------------------------------------------------------------------------------

_watch: dict[str, Any] = {"roots": (), "seen": []}
_guard = threading.local()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Record every file opened or folder listed (``open``, ``os.scandir``, ``os.listdir``) that resolves
    under a watched folder. Audit hooks stay for the life of the process: idle when nothing is watched."""
    roots = _watch["roots"]
    if not roots or event not in ("open", "os.scandir", "os.listdir") or getattr(_guard, "busy", False):
        return
    path = args[0] if args else None
    if not isinstance(path, str | bytes | os.PathLike):
        return  # a file descriptor: opened by path before, and seen then
    _guard.busy = True
    try:
        real = os.path.realpath(os.fsdecode(path))
        if any(real == r or real.startswith(r + os.sep) for r in roots):
            _watch["seen"].append((event, os.fsdecode(path)))
    finally:
        _guard.busy = False


_installed: list[bool] = []


@pytest.fixture
def opened_outside() -> Iterator[list[tuple[str, str]]]:
    """Call it with folders: every open or listing that resolves under them is recorded (until the test ends)."""
    if not _installed:
        sys.addaudithook(_audit)
        _installed.append(True)
    seen: list[tuple[str, str]] = []
    _watch["seen"] = seen
    yield seen
    _watch["roots"] = ()


def _watch_folders(*folders: Path) -> None:
    _watch["roots"] = tuple(os.path.realpath(f) for f in folders)


# -- snapshots -------------------------------------------------------------------------------------------------


def _snapshot(top: Path, skip: tuple[Path, ...]) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``top`` but ``skip``: folders, links (their target), files (inode, link count, mtime, sha256)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):  # links to folders are listed, not followed
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in [*dirnames, *filenames]:
            path = here / name
            rel = path.relative_to(top).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", st.st_ino, st.st_nlink, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _catalogue_text(url: str) -> str:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                repr(tuple(row)) for table in inspect(conn).get_table_names() for row in conn.execute(text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()


# -- the batch -------------------------------------------------------------------------------------------------


class Tree:
    """``photos/`` (the source), ``assets/`` (the destination), ``outside/`` (what neither may reach)."""

    def __init__(self, tmp_path: Path, photo_bytes: dict[str, bytes]) -> None:
        self.top = tmp_path
        self.root, self.dest, self.outside = tmp_path / "photos", tmp_path / "assets", tmp_path / "outside"
        self.catalogue = tmp_path / "catalogue"
        self.catalogue.mkdir()
        self.url = f"sqlite:///{self.catalogue / 'cat.db'}"
        marker = MARKER.encode()
        # outside: photos that decode (the marker after the PNG's end), and the destination's escape target
        (self.outside / "pics").mkdir(parents=True)
        self.outside_files = {
            "linked": self._write(self.outside / "linked.png", photo_bytes["robot.png"] + marker),
            "in-linked-folder": self._write(self.outside / "pics" / "photo.png", photo_bytes["teapot.png"] + marker),
            "hard": self._write(self.outside / "hard.png", photo_bytes["hamburger.png"]),
        }
        (self.outside / "dest-target").mkdir()
        chair = photo_bytes["chair.png"]
        # good photos
        self.good = {
            "chair": self._write(self.root / "SKU-chair" / "chair.png", chair),
            "odd": self._write(self.root / "SKU-odd" / "front..v2 (1).png", photo_bytes["robot.png"]),  # odd, safe
        }
        self.hard = self.root / "SKU-hard" / "hamburger.png"
        self.hard.parent.mkdir()
        os.link(self.outside / "hard.png", self.hard)
        # a good photo whose destination SKU folder is a symlink out of the destination
        self.flor = self._write(self.root / "SKU-flor" / "flor.png", photo_bytes["flor.png"])
        self.dest.mkdir()
        (self.dest / "SKU-flor").symlink_to(self.outside / "dest-target", target_is_directory=True)
        # links out of the source
        (self.root / "SKU-link").mkdir()
        (self.root / "SKU-link" / "front.png").symlink_to(self.outside / "linked.png")
        (self.root / "SKU-dirlink").symlink_to(self.outside / "pics", target_is_directory=True)
        # names that are no safe key, and SKUs that are no folder name
        self.bad_keys = {
            "backslash": "SKU-chair/back\\slash.png",
            "control": "SKU-chair/tab\there.png",
            "climb": "SKU-chair/x%2F..%2F..%2F..%2Foutside.png",  # 'x/../../../outside.png' once percent-decoded
            "dotdot-folder": "%2e%2e/photo.png",
        }
        self.bad_skus = {"dots-folder": ".../photo.png", "sidecar-dotdot": "SKU-side/a.png", "sidecar-climb": "SKU-side/b.png"}
        for key in [*self.bad_keys.values(), *self.bad_skus.values()]:
            self._write(self.root.joinpath(*key.split("/")), chair)
        (self.root / "sidecar.csv").write_text("key,sku\nSKU-side/a.png,..\nSKU-side/b.png,../outside\n")

    @staticmethod
    def _write(path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def uri(self, key: str) -> str:
        return f"{self.root.as_uri()}/{key}"


@pytest.fixture
def tree(tmp_path: Path, photo_bytes: dict[str, bytes]) -> Tree:
    return Tree(tmp_path, photo_bytes)


def test_links_and_unsafe_keys_in_a_local_source_reach_nothing_outside_the_roots(
    tree: Tree, fast_options: dict[str, Any], opened_outside: list[tuple[str, str]], capfd: pytest.CaptureFixture[str]
) -> None:
    skip = (tree.dest, tree.catalogue)
    before = _snapshot(tree.top, skip)
    _watch_folders(tree.outside)
    settings = load_settings(**{**fast_options, "dest": str(tree.dest), "catalogue_url": tree.url, "sidecar": "sidecar.csv"})
    report = convert_local(str(tree.root), settings).as_dict()
    _watch["roots"] = ()
    out, err = capfd.readouterr()

    # one row per listed photo: the links out are no objects of the source, so no rows
    bad = len(tree.bad_keys) + len(tree.bad_skus)
    assert_counts(report, photos=len(tree.good) + 2 + bad)
    rows = {r["uri"]: r for r in report["photos"]}
    assert not [u for u in rows if "SKU-link" in u or "SKU-dirlink" in u], sorted(rows)
    # the good photos, the hard-linked one among them, published once
    good = [p.as_uri() for p in (*tree.good.values(), tree.hard)]
    assert report["counts"]["published"] == len(good), report["photos"]
    assert_published_once(str(tree.dest), tree.url, good)
    assert_consistent(str(tree.dest), tree.url)
    # each unsafe key or SKU: a failure row naming it, at discovery
    refused = {r["uri"]: r for r in report["photos"] if r["stage"] == "discover"}
    assert len(refused) == bad, sorted(refused)
    for what, key in tree.bad_keys.items():
        row = refused[tree.uri(key)]
        assert (row["status"], row["reason"]) == ("failed", "invalid_key"), (what, row)
        assert key.rsplit("/", 1)[-1] in row["message"], (what, row)
    for what, key in tree.bad_skus.items():
        row = refused[tree.uri(key)]
        assert (row["status"], row["reason"]) == ("failed", "bad_sku"), (what, row)
        assert tree.uri(key) in row["message"] or key in row["message"], (what, row)
    # the photo bound for the destination's symlinked SKU folder: refused at publishing, nothing written out
    flor = rows[tree.flor.as_uri()]
    assert (flor["status"], flor["stage"], flor["reason"]) == ("failed", "publish", "outside_root"), flor
    assert list((tree.outside / "dest-target").iterdir()) == []

    # nothing outside the roots opened or listed; nothing but the destination and the catalogue changed
    assert opened_outside == [], opened_outside
    assert _snapshot(tree.top, skip) == before
    assert (tree.outside / "hard.png").stat().st_nlink == 2  # the file it shares, untouched
    # no byte of the files outside anywhere: not their marker, not their sha256 (what a read would record)
    objects = [p for p in tree.dest.rglob("*") if p.is_file() and not p.is_symlink() and tree.dest.resolve() in p.resolve().parents]
    assert objects
    digests = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in tree.outside_files.items() if k != "hard"}
    catalogue = _catalogue_text(tree.url)
    for where, data in [*((str(p), p.read_bytes()) for p in objects), ("catalogue", catalogue.encode()), ("output", (out + err).encode())]:
        assert MARKER.encode() not in data, f"bytes of a file outside the roots in {where}"
        for name, digest in digests.items():
            assert digest.encode() not in data, f"the sha256 of outside/{name} in {where}: it was read"
    # the refusals were recorded as failure rows, once each, naming the photos
    cat = Catalogue(tree.url)
    try:
        failures = cat.failures_since()
    finally:
        cat.close()
    assert sorted(f.photo_uri for f in failures) == sorted([*refused, tree.flor.as_uri()])


@pytest.mark.usefixtures("prefect_harness", "result_cache", "worker_env")
@pytest.mark.parametrize("escape", ["symlinked-file", "symlinked-folder", "climbing-uri"])
def test_a_listed_photo_leading_out_of_the_allowed_source_refuses_the_run(
    tree: Tree, escape: str, opened_outside: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.convert import convert_batch
    from flows.triggers import RunRefused

    monkeypatch.setenv("ASSET3D_ALLOWED_SOURCES", str(tree.root))
    uri = {
        "symlinked-file": tree.uri("SKU-link/front.png"),
        "symlinked-folder": tree.uri("SKU-dirlink/photo.png"),
        "climbing-uri": tree.uri("SKU-chair/../../outside/linked.png"),
    }[escape]
    skip = (tree.catalogue, tree.top / "prefect-results")  # the flow's own result of its refusal
    before = _snapshot(tree.top, skip)
    _watch_folders(tree.outside)
    with pytest.raises(RunRefused, match="outside the allowed sources") as refused:
        convert_batch([tree.good["chair"].as_uri(), uri], dest=str(tree.dest), catalogue_url=tree.url)
    _watch["roots"] = ()
    assert uri in str(refused.value)
    assert opened_outside == [], opened_outside
    assert _snapshot(tree.top, skip) == before  # nothing read, nothing written, the good photo neither
    if (tree.catalogue / "cat.db").exists():
        cat = Catalogue(tree.url)
        try:
            assert cat.photos_by_uri([tree.good["chair"].as_uri(), uri]) == {}
        finally:
            cat.close()
