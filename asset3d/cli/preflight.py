"""Mistakes refused before any work starts: before a Prefect server boots, a model loads or a photo is read.

Each check raises `Refused` with one line naming the item and the cause; `asset3d.cli.main` prints it and
exits 1, without a traceback (``--debug`` or ``ASSET3D_DEBUG=1`` shows one). Every check is quick: local
files and settings are read, and S3 gets one ``HeadBucket`` with a 2 s connect and 3 s read timeout.
Nothing here imports Prefect.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

#: File suffixes taken as photos when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Refused(Exception):
    """A mistake found before work started: the message is the one line the user sees."""


def store(uri: str, *, role: str, must_exist: bool) -> None:
    """Check a store URI (``s3://bucket/prefix``, ``file:///abs`` or a folder) before it is used.

    Parameters
    ----------
    role
        What the store is for (``source``, ``dest``), named in the message.
    must_exist
        A local folder must exist and be a folder (a source); a destination folder may be created.

    Raises
    ------
    Refused
        A malformed URI, missing S3 credentials, an endpoint that does not answer, a bucket that does not
        exist or refuses access, a local source that is missing or not a folder.
    """
    from storage import StorageError

    text = str(uri)
    if "://" not in text:
        _local(Path(text), uri, role, must_exist)
        return
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise Refused(f"{role} {uri!r}: use file:///absolute/path")
        from urllib.parse import unquote

        _local(Path(unquote(parts.path)), uri, role, must_exist)
        return
    if scheme != "s3":
        raise Refused(f"{role} {uri!r}: unsupported scheme {scheme!r} (use s3://bucket/prefix, file:///abs/path or a folder)")
    if not parts.netloc:
        raise Refused(f"{role} {uri!r}: no bucket name (use s3://bucket/prefix)")
    if not _BUCKET.match(parts.netloc) or ".." in parts.netloc:
        raise Refused(f"{role} {uri!r}: {parts.netloc!r} is not a valid S3 bucket name")
    if parts.query or parts.fragment:
        raise Refused(f"{role} {uri!r}: query and fragment are not part of a store URI")
    from storage.s3 import S3Store

    try:
        s3 = S3Store(parts.netloc, parts.path.strip("/"), max_attempts=1, connect_timeout=2.0, read_timeout=3.0)
        s3.check_access()
    except StorageError as err:
        cause = "endpoint unreachable: " if err.reason == "connection" else ""
        raise Refused(f"{role} {uri}: {cause}{_first_line(err)}") from None


def _local(path: Path, uri: str, role: str, must_exist: bool) -> None:
    if path.exists() and not path.is_dir():
        raise Refused(f"{role} {uri}: not a folder")
    if must_exist and not path.exists():
        raise Refused(f"{role} {uri}: no such folder")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def prefect_api_url() -> str:
    """The Prefect server this machine is configured for (``PREFECT_API_URL``, or the active profile's).

    Read from the environment and ``$PREFECT_HOME/profiles.toml`` without importing Prefect.

    Raises
    ------
    Refused
        No server configured (a command would otherwise talk to a throwaway temporary server).
    """
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if not url:
        import tomllib

        home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
        profiles = os.environ.get("PREFECT_PROFILES_PATH") or str(home / "profiles.toml")
        try:
            doc = tomllib.loads(Path(profiles).read_text())
        except (OSError, ValueError):
            doc = {}
        active = os.environ.get("PREFECT_PROFILE") or doc.get("active", "ephemeral")
        url = str(doc.get("profiles", {}).get(active, {}).get("PREFECT_API_URL", "")).strip()
    if not url:
        raise Refused(
            "no Prefect server configured: set PREFECT_API_URL (e.g. http://prefect.internal:4200/api) "
            "or `prefect profile use` a profile that has one"
        )
    return url


def photo_files(paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """The photo files ``paths`` name: files as given, folders searched recursively for image suffixes.

    Returns ``(file, given)`` pairs in order (``given``: named on the command line, not found in a folder).

    Raises
    ------
    Refused
        A path that does not exist, or a folder without any image file.
    """
    out: list[tuple[Path, bool]] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
            if not found:
                raise Refused(f"{p}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            out += [(f, False) for f in found]
        elif p.is_file():
            out.append((p, True))
        else:
            raise Refused(f"{p}: no such file or folder")
    return out


def unreadable_images(files: Iterable[Path]) -> dict[Path, str]:
    """The files that are not readable images, with why (the header and structure are checked, cheaply)."""
    from PIL import Image, UnidentifiedImageError

    bad: dict[Path, str] = {}
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
        except UnidentifiedImageError:
            bad[f] = "not an image this pipeline reads"
        except (OSError, SyntaxError, ValueError) as err:
            bad[f] = f"unreadable image ({_first_line(err)})"
        except Image.DecompressionBombError as err:
            bad[f] = f"refused: {_first_line(err)}"
    return bad
