"""Photos in: find them in a bucket, name their SKU, download them, and turn them into the model input.

* `discover` lists a prefix (or heads an explicit list of URIs) and gives each photo its SKU; a photo it
  cannot accept (a folder name that is no SKU, an unsafe key) is a `Refusal` of that photo alone;
* `fetch_photo` downloads one photo under a size cap, hashes it and checks that it decodes;
* `prepare_photo` runs the intake stage (background, framing, flags) on the bytes.

Both decode under two pixel bounds: a photo above ``max_pixels`` (width x height, read from the header) is
refused before decoding (``too_many_pixels``), and every decode first takes the photo's pixels from the
process-wide `PIXELS` budget (``pixel_budget``), waiting while other photos hold it, so the decoded pixels
of a worker process stay bounded however many photos are in flight.

What `fetch_photo` and `prepare_photo` return carries no identity (no URI, no SKU): those results are
cached by content, and the same bytes may be two photos of two products.

SKU rules, in order: a sidecar file (CSV ``key,sku`` or JSON ``{key: sku}``; keys relative to the source
prefix, or full URIs), else the ``sku_pattern`` regex searched in the photo's URI (group ``sku``, else group
1), else the name of the photo's parent folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from asset3d.pipeline.errors import StageError, describe
from asset3d.pipeline.memory import release_freed_memory
from asset3d.pipeline.options import DiscoverOptions, FetchOptions, IntakeOptions
from asset3d.pipeline.vocabulary import Stage
from meshing.scale import ProductSize
from storage import InvalidKey, ObjectNotFound, StorageError, open_store, validate_key
from storage.objects import ObjectStore

#: File suffixes listed as photos (others beside them, such as a sidecar, are ignored).
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class PhotoRef:
    """Where one photo is and which product it shows.

    Attributes
    ----------
    uri
        Full URI (``s3://bucket/prefix/key`` or ``file:///abs/path``): the photo's identity in the catalogue.
    store
        URI of the store it is read from; ``key`` is relative to it.
    sku
        The product's SKU.
    etag, size
        From the listing (``None`` when unknown); an unchanged ETag lets a re-run skip the download.
    product_size
        The product's dimensions from the sidecar, if it gives them.
    """

    uri: str
    store: str
    key: str
    sku: str
    etag: str | None = None
    size: int | None = None
    #: the product's real dimensions when the sidecar (or a fanned-out batch's parent) gave them
    product_size: ProductSize | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def bucket_and_key(self) -> tuple[str, str]:
        """The catalogue's ``bucket`` and ``key`` columns: the S3 bucket and full key, or the folder and key."""
        parts = urlsplit(self.uri)
        if parts.scheme == "s3":
            return parts.netloc, parts.path.lstrip("/")
        return self.store, self.key


@dataclass(frozen=True)
class PhotoFacts:
    """What the catalogue's photo row needs once the bytes were read (size in bytes, pixels if decoded)."""

    sha256: str
    size: int
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Refusal:
    """A photo discovery could not accept: its URI (or listing key), and why."""

    uri: str
    reason: str
    message: str


@dataclass(frozen=True)
class Discovery:
    """What a source holds: the photos to consider, and those refused one by one."""

    refs: list[PhotoRef]
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class Fetched:
    """One downloaded photo: its bytes, SHA-256 and decoded size (no identity: see the module docstring)."""

    data: bytes = field(repr=False)
    sha256: str
    width: int
    height: int
    format: str

    @property
    def size(self) -> int:
        return len(self.data)

    def facts(self) -> PhotoFacts:
        return PhotoFacts(self.sha256, self.size, self.width, self.height)


@dataclass(frozen=True)
class Prepared:
    """The model input of one photo.

    Attributes
    ----------
    sha256
        Of the photo's bytes.
    image
        ``(512, 512, 3) uint8`` object framed on gray 0.5.
    mask
        ``(512, 512) bool`` the object in the frame of ``image``.
    flags
        Intake reasons the photo is not fully trusted (``clipped``, ``low_contrast``, ...).
    intake
        The intake summary (method, flags, source format), JSON-ready.
    """

    sha256: str
    image: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    flags: tuple[str, ...]
    intake: dict[str, Any] = field(repr=False)


# -- SKUs ----------------------------------------------------------------------------------------------------


def check_sku(sku: str, uri: str) -> str:
    """``sku`` if it can name a folder of the destination (1-128 of ``A-Za-z0-9._-``), else `StageError`."""
    if not isinstance(sku, str) or not _SKU.match(sku) or sku in (".", ".."):
        raise StageError(Stage.discover, "bad_sku", f"{uri}: SKU {sku!r} refused (1-128 of A-Z a-z 0-9 . _ -)")
    return sku


def sku_for(uri: str, *, pattern: str | None = None, sidecar: Mapping[str, str] | None = None, key: str = "") -> str:
    """The SKU of one photo by the rules of this module (sidecar by key or URI, pattern, parent folder)."""
    if sidecar:
        for probe in (key, uri):
            if probe and probe in sidecar:
                return check_sku(sidecar[probe], uri)
    if pattern is not None:
        m = re.search(pattern, uri)
        if m is None:
            raise StageError(Stage.discover, "bad_sku", f"{uri}: sku_pattern {pattern!r} does not match")
        value = m.group("sku") if "sku" in m.re.groupindex else m.group(1)
        return check_sku(value, uri)
    path = urlsplit(uri).path if "://" in uri else uri
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2:
        raise StageError(Stage.discover, "bad_sku", f"{uri}: no parent folder to name the SKU; set sku_pattern or a sidecar")
    return check_sku(parts[-2], uri)


#: Units a sidecar's ``unit`` column may name, in metres.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
_DIMENSIONS = ("width", "height", "depth")


@dataclass(frozen=True)
class Sidecar:
    """What a sidecar says, by photo key (or URI): SKUs, and products' real dimensions."""

    skus: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, ProductSize] = field(default_factory=dict)

    def size_for(self, key: str, uri: str) -> ProductSize | None:
        return self.sizes.get(key) or self.sizes.get(uri)


def _size(row: Mapping[str, Any], where: str) -> ProductSize | None:
    """Dimensions of one sidecar row: ``width_m``/``height_m``/``depth_m``, or ``width``/``height``/``depth``
    in the ``unit`` column's unit (``mm``, ``cm`` or ``m``)."""
    values: dict[str, float] = {}
    unit = str(row.get("unit") or "").strip().lower()
    for dim in _DIMENSIONS:
        for column, factor in ((f"{dim}_m", 1.0), (dim, UNITS.get(unit))):
            raw = row.get(column)
            if raw in (None, ""):
                continue
            if factor is None:
                raise StageError(Stage.discover, "bad_sidecar", f"{where}: column {column!r} needs a unit column (mm, cm or m), got {unit!r}")
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise StageError(Stage.discover, "bad_sidecar", f"{where}: {column}={raw!r} is not a number") from None
            if not (math.isfinite(number) and number > 0):
                raise StageError(Stage.discover, "bad_sidecar", f"{where}: {column}={raw!r} must be a positive size")
            values[f"{dim}_m"] = number * factor
    return ProductSize(**values, source="sidecar") if values else None


def parse_sidecar(data: bytes, name: str) -> Sidecar:
    """A sidecar's SKUs and product sizes by photo key (or URI).

    CSV: a header with a ``key`` (or ``uri`` / ``file``) column and ``sku`` and/or size columns
    (``width_m``, ``height_m``, ``depth_m``; or ``width``, ``height``, ``depth`` with a ``unit`` column of
    ``mm``, ``cm`` or ``m``). JSON: an object ``{key: sku}``, or a list of objects with the same fields.

    Raises
    ------
    StageError
        ``bad_sidecar``, naming the file (and row) and what is wrong.
    """
    text = data.decode("utf-8-sig", errors="replace")
    rows: list[dict[str, Any]]
    if name.lower().endswith(".json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise StageError(Stage.discover, "bad_sidecar", f"sidecar {name}: not JSON ({err})") from None
        if isinstance(doc, dict):
            rows = [{"key": k, "sku": v} for k, v in doc.items()]
        else:
            rows = [{str(k).lower(): v for k, v in r.items()} for r in doc if isinstance(r, dict)]
        key_col = "key"
    else:
        reader = csv.DictReader(io.StringIO(text))
        fields_ = [f.strip().lower() for f in reader.fieldnames or []]
        key_col = next((c for c in ("key", "uri", "file", "filename") if c in fields_), "")
        sizes = any(c in fields_ for d in _DIMENSIONS for c in (d, f"{d}_m"))
        if not key_col or ("sku" not in fields_ and not sizes):
            raise StageError(Stage.discover, "bad_sidecar", f"sidecar {name}: needs a header with a 'key' column and 'sku' or size columns")
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    out = Sidecar()
    for i, row in enumerate(rows, start=2):
        key = str(row.get(key_col) or "").strip()
        if not key:
            continue
        if row.get("sku"):
            out.skus[key] = str(row["sku"]).strip()
        size = _size(row, f"sidecar {name} row {i} ({key})")
        if size is not None:
            out.sizes[key] = size
    if not out.skus and not out.sizes:
        raise StageError(Stage.discover, "bad_sidecar", f"sidecar {name}: no rows with a key and a SKU or a size")
    return out


def read_sidecar(sidecar: str, source_store: ObjectStore | None) -> Sidecar:
    """Read the sidecar: a key of the source store when it exists there, else a URI or a local path."""
    if source_store is not None:
        try:
            return parse_sidecar(source_store.get(validate_key(sidecar), max_bytes=16 << 20), sidecar)
        except ObjectNotFound:
            pass
        except StageError:
            raise
        except Exception:  # an absolute path or URI is not a valid key: try it as a location below
            pass
    parent, _, name = sidecar.rstrip("/").rpartition("/")
    if not name:
        raise StageError(Stage.discover, "bad_sidecar", f"sidecar {sidecar!r}: not a file")
    try:
        data = open_store(parent or ".").get(name, max_bytes=16 << 20)
    except ObjectNotFound:
        raise StageError(Stage.discover, "bad_sidecar", f"sidecar {sidecar}: not found") from None
    return parse_sidecar(data, name)


# -- discovery -----------------------------------------------------------------------------------------------


def is_photo_key(key: str) -> bool:
    return key.lower().endswith(PHOTO_SUFFIXES) and not key.rsplit("/", 1)[-1].startswith(".")


def split_uri(uri: str) -> tuple[ObjectStore, str]:
    """The store holding ``uri`` (its parent folder or prefix) and the key of ``uri`` in it."""
    parent, _, name = uri.rstrip("/").rpartition("/")
    if not name or parent.endswith(":/"):
        raise StageError(Stage.discover, "bad_uri", f"{uri!r}: not a photo URI (s3://bucket/key or a file path)")
    return open_store(parent or "."), name


def discover(source: str | Sequence[str | Mapping[str, str]], options: DiscoverOptions) -> Discovery:
    """Every photo of ``source`` with its SKU, in key order, and the photos refused one by one.

    Parameters
    ----------
    source
        A prefix URI or folder (listed), or a list of photo URIs (each `head`-ed); list items may also
        be ``{"uri": ..., "sku": ...}`` with the SKU already decided (sub-batches of a fanned-out batch).

    Raises
    ------
    StageError
        ``bad_sidecar``: the SKU sidecar is unreadable (it concerns every photo).
    storage.StorageError
        The source itself cannot be listed (no such bucket, access denied, ...).
    """
    refs: list[PhotoRef] = []
    refused: list[Refusal] = []
    if isinstance(source, str):
        store = open_store(source)
        sidecar = read_sidecar(options.sidecar, store) if options.sidecar else Sidecar()
        for info in store.list(""):
            if not is_photo_key(info.key):
                continue
            try:
                validate_key(info.key)
                uri = store.uri_for(info.key)
                sku = sku_for(uri, pattern=options.sku_pattern, sidecar=sidecar.skus, key=info.key)
            except (StageError, InvalidKey) as err:
                refused.append(_refusal(f"{store.uri}/{info.key}", err))
                continue
            refs.append(PhotoRef(uri, store.uri, info.key, sku, info.etag, info.size, sidecar.size_for(info.key, uri)))
        return Discovery(refs, refused)
    sidecar = read_sidecar(options.sidecar, None) if options.sidecar else Sidecar()
    for item in source:
        uri, sku = (item["uri"], item.get("sku")) if isinstance(item, Mapping) else (str(item), None)
        given_size = item.get("size") if isinstance(item, Mapping) else None
        try:
            store, key = split_uri(uri)
            info = store.head(key)
            uri = store.uri_for(key)
            sku = check_sku(sku, uri) if sku else sku_for(uri, pattern=options.sku_pattern, sidecar=sidecar.skus, key=key)
            size = ProductSize(**given_size) if isinstance(given_size, Mapping) else sidecar.size_for(key, uri)
        except StageError as err:
            refused.append(_refusal(uri, err))
            continue
        except StorageError as err:
            if err.transient:
                raise
            refused.append(_refusal(uri, err))
            continue
        refs.append(PhotoRef(uri, store.uri, key, sku, info.etag, info.size, size))
    return Discovery(refs, refused)


def _refusal(uri: str, err: Exception) -> Refusal:
    reason, message = describe(err)
    return Refusal(uri, reason, message if uri in message else f"{uri}: {message}")


# -- decoded pixels ------------------------------------------------------------------------------------------


class PixelBudget:
    """A weighted semaphore of decoded pixels, shared by every thread of the process.

    `hold` waits until ``pixels`` fit under ``total`` beside what other photos hold, first come first
    served (a big photo is not overtaken for ever by small ones); a photo larger than the whole budget
    waits until it is alone and then runs alone. ``peak`` is the most pixels held at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.held = 0
        self.peak = 0

    @contextmanager
    def hold(self, pixels: int, total: int) -> Iterator[None]:
        want = max(0, min(int(pixels), int(total)))
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            self._cond.wait_for(lambda: self._queue[0] is ticket and (self.held == 0 or self.held + want <= total))
            self._queue.popleft()
            self.held += want
            self.peak = max(self.peak, self.held)
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self.held -= want
                self._cond.notify_all()
            release_freed_memory()  # the decode's pages, from this thread's arena


#: The decoded pixels of this process's photos (fetch's decode check and intake).
PIXELS = PixelBudget()


# -- fetch and intake ----------------------------------------------------------------------------------------


def fetch_photo(ref: PhotoRef, options: FetchOptions) -> Fetched:
    """Download one photo (refused above ``options.max_bytes``), hash it, and check that it decodes.

    Raises
    ------
    storage.StorageError
        ``too_large``, ``not_found``, access denied (permanent) or a transient failure.
    StageError
        A corrupt, truncated or unsupported file (``reason`` from intake's decoder, ``facts`` set).
    """
    from intake import DecodeLimits, IntakeError, decode_image
    from intake.decode import probe

    data = open_store(ref.store).get(ref.key, max_bytes=options.max_bytes)
    sha = hashlib.sha256(data).hexdigest()
    limits = DecodeLimits(max_pixels=options.max_pixels)
    try:
        width, height = probe(data, name=ref.uri, limits=limits)  # refused above max_pixels before decoding
        with PIXELS.hold(width * height, options.pixel_budget):
            decoded = decode_image(data, name=ref.uri, limits=limits)
            (width, height), fmt = decoded.size, decoded.format
            del decoded  # the pixels go before the budget is given back
    except IntakeError as err:
        raise StageError(Stage.fetch, err.reason.value, str(err), facts=PhotoFacts(sha, len(data))) from err
    return Fetched(data, sha, int(width), int(height), fmt)


def prepare_photo(fetched: Fetched, options: IntakeOptions, name: str) -> Prepared:
    """The intake stage on one photo's bytes (``name``, the photo's URI, only names it in errors).

    Raises
    ------
    intake.IntakeError
        A refusal of intake (no foreground, unsupported mode, ...).
    StageError
        ``intake_rejected`` when intake flags the policy rejects outright (e.g. no or several objects).
    """
    import intake

    limits = intake.DecodeLimits(max_pixels=options.max_pixels)
    with PIXELS.hold(fetched.width * fetched.height, options.pixel_budget):
        result = intake.preprocess(
            fetched.data, name=name, method=options.method, foreground_ratio=options.foreground_ratio, limits=limits
        )
        prepared = Prepared(
            sha256=fetched.sha256,
            image=np.ascontiguousarray(result.image),
            mask=np.asarray(result.framed_mask) > 0,
            flags=tuple(result.reasons),
            intake=result.to_json(),
        )
        del result  # the photo-sized mask goes before the budget is given back
    reject = set(options.reject_flags) & set(prepared.flags)
    if reject:
        raise StageError(Stage.intake, "intake_rejected", f"{name}: intake flags {sorted(reject)} are rejected by the review policy")
    return prepared
