"""Who is asking, and whether a form post came from the app's own page.

Identities come from, in order: an ``Authorization`` header (``Bearer TOKEN``, or ``Basic`` with the
reviewer's name and token), else the session cookie a sign-in (``POST /login``) set. Credentials that are
given but wrong are refused (401) even where anonymous reads are allowed. The JSON API's writes take the
header only (no cookie), and need ``Content-Type: application/json``, which a cross-site form cannot send.

Form posts carry a CSRF token: a random nonce signed with the app's key, set as a cookie and repeated in
a hidden form field; a post whose field is missing, unsigned or different from the cookie is refused (403).
The reviewer recorded on a review event is the identity found here, never a form or JSON field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from asset3d.web.reviewers import Reviewers

SESSION_COOKIE = "asset3d_session"
CSRF_COOKIE = "asset3d_csrf"
CSRF_FIELD = "csrf_token"


class AuthError(Exception):
    """Credentials were given and are wrong (401)."""

    reason = "bad_credentials"
    transient = False


class AuthRequired(Exception):
    """No identity where one is needed (401; pages redirect to the sign-in form)."""

    reason = "auth_required"
    transient = False


class CsrfRefused(Exception):
    """A form post without a valid CSRF token (403)."""

    reason = "csrf"
    transient = False


@dataclass(frozen=True)
class Identity:
    """A reviewer, and how they proved it (``bearer``, ``basic`` or ``session``)."""

    reviewer: str
    via: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text``, URL-safe base64."""
    return _b64(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest())


# -- sessions ------------------------------------------------------------------------------------------------


def make_session(key: bytes, reviewer: str, fingerprint: str, *, now: float | None = None) -> str:
    """A signed session cookie value: reviewer, their token's fingerprint, issue time."""
    payload = _b64(json.dumps({"r": reviewer, "f": fingerprint, "t": int(now or time.time())}).encode())
    return f"{payload}.{sign(key, 'session:' + payload)}"


def read_session(key: bytes, value: str, *, max_age_s: float, now: float | None = None) -> tuple[str, str] | None:
    """``(reviewer, fingerprint)`` from a session cookie that is signed and not expired, else None."""
    payload, _, mac = (value or "").partition(".")
    if not payload or not mac or not hmac.compare_digest(mac, sign(key, "session:" + payload)):
        return None
    try:
        doc = json.loads(_unb64(payload))
        reviewer, fingerprint, issued = str(doc["r"]), str(doc["f"]), float(doc["t"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    age = (now or time.time()) - issued
    return (reviewer, fingerprint) if 0 <= age <= max_age_s else None


# -- CSRF ----------------------------------------------------------------------------------------------------


def new_csrf(key: bytes) -> str:
    """A fresh CSRF token: a random nonce and its signature."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{sign(key, 'csrf:' + nonce)}"


def csrf_valid(key: bytes, token: str | None) -> bool:
    """True when ``token`` was made by `new_csrf` with this key."""
    nonce, _, mac = (token or "").partition(".")
    return bool(nonce and mac) and hmac.compare_digest(mac, sign(key, "csrf:" + nonce))


def check_csrf(key: bytes, cookie: str | None, field: str | None) -> None:
    """Refuse (`CsrfRefused`) unless the form field repeats the signed cookie."""
    if not (cookie and field and csrf_valid(key, cookie) and hmac.compare_digest(cookie, field)):
        raise CsrfRefused("form post without a valid CSRF token: reload the page and try again")


# -- identities ----------------------------------------------------------------------------------------------


def from_header(header: str | None, reviewers: Reviewers) -> Identity | None:
    """The identity an ``Authorization`` header proves; None without one; `AuthError` when it is wrong."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        name = reviewers.by_token(value)
        if name is None:
            raise AuthError("unknown reviewer token")
        return Identity(name, "bearer")
    if scheme.lower() == "basic" and value:
        try:
            user, sep, token = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed basic credentials") from None
        if not sep or not reviewers.check(user, token):
            raise AuthError("wrong reviewer name or token")
        return Identity(user, "basic")
    raise AuthError("unsupported Authorization header: use 'Bearer TOKEN' or basic auth (name, token)")


def from_session(cookie: str | None, reviewers: Reviewers, key: bytes, *, max_age_s: float) -> Identity | None:
    """The reviewer a valid session cookie names, while their token is unchanged; else None."""
    if not cookie:
        return None
    found = read_session(key, cookie, max_age_s=max_age_s)
    if found is None:
        return None
    reviewer, fingerprint = found
    current = reviewers.fingerprint(reviewer)
    return Identity(reviewer, "session") if current and hmac.compare_digest(current, fingerprint) else None
