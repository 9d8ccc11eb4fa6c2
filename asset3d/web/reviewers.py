"""Reviewer identities: a name and a token, of which only the token's SHA-256 is stored.

::

    token = add_reviewer(path, "ana")          # printed once by `asset3d serve --add-reviewer ana`
    Reviewers(path).by_token(token)            # "ana"; None for an unknown token
    Reviewers(path).check("ana", token)        # True (HTTP basic auth: user ana, password = the token)

The file (``ASSET3D_SERVE_REVIEWERS_FILE``, default ``.asset3d/reviewers.json``, mode 0600) is
``{"reviewers": {"ana": {"token_sha256": "...", "created_at": "..."}}}``. Tokens are 256 random bits
(`secrets.token_urlsafe`), so a plain SHA-256 is enough to keep them unusable if the file leaks; no
reviewer-chosen password is ever accepted. Adding a reviewer again replaces the token (the old one and
its sessions stop working); the app re-reads the file when it changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: Reviewer names: what review events record.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = "a3r_"


class ReviewerError(ValueError):
    """A bad reviewer name, or an unreadable reviewers file."""

    reason = "bad_reviewer"
    transient = False


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token (what the file stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ReviewerError(
            f"reviewer name {name!r} refused: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ReviewerError(f"reviewers file {path}: unreadable ({err})") from None
    reviewers = doc.get("reviewers") if isinstance(doc, dict) else None
    if not isinstance(reviewers, dict):
        raise ReviewerError(f"reviewers file {path}: expected {{\"reviewers\": {{NAME: {{\"token_sha256\": ...}}}}}}")
    return {str(k): dict(v) for k, v in reviewers.items() if isinstance(v, dict)}


def _write(path: Path, reviewers: dict[str, dict[str, str]]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".reviewers-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"reviewers": reviewers}, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_reviewer(path: Path, name: str) -> str:
    """Create (or replace) ``name``'s token; returns the token, which is stored only as its hash."""
    check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    reviewers = _read(path)
    reviewers[name] = {"token_sha256": token_hash(token), "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    _write(path, reviewers)
    return token


def remove_reviewer(path: Path, name: str) -> bool:
    """Remove ``name``; True when it was there."""
    reviewers = _read(path)
    if reviewers.pop(name, None) is None:
        return False
    _write(path, reviewers)
    return True


@dataclass
class Reviewers:
    """The reviewers file, re-read when it changes (adding a reviewer needs no restart)."""

    path: Path
    _stamp: tuple[int, int] | None = None
    _hashes: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._hashes is None or stamp != self._stamp:
            self._hashes = {n: str(v.get("token_sha256", "")) for n, v in _read(self.path).items()} if stamp else {}
            self._stamp = stamp
        return self._hashes

    def names(self) -> list[str]:
        return sorted(self._load())

    def fingerprint(self, name: str) -> str | None:
        """A short digest of ``name``'s current token hash (sessions carry it: a new token ends them)."""
        stored = self._load().get(name)
        return hashlib.sha256(f"session:{stored}".encode()).hexdigest()[:16] if stored else None

    def by_token(self, token: str) -> str | None:
        """The reviewer whose token this is (constant-time comparisons), else None."""
        digest = token_hash(token)
        found = None
        for name, stored in self._load().items():
            if stored and hmac.compare_digest(stored, digest):
                found = name
        return found

    def check(self, name: str, token: str) -> bool:
        """True when ``token`` is ``name``'s token."""
        stored = self._load().get(name)
        return bool(stored) and hmac.compare_digest(str(stored), token_hash(token))
