"""What every request of the review app shares: settings, the catalogue, the buckets, the reviewers, the
templates; and the dependencies that say who is asking.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from asset3d import __version__
from asset3d.web.files import Buckets
from asset3d.web.reviewers import Reviewers
from asset3d.web.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AuthError,
    AuthRequired,
    Identity,
    csrf_valid,
    from_header,
    from_session,
    new_csrf,
)
from asset3d.web.settings import ServeSettings, missing_sqlite_file
from storage.catalogue import Catalogue, CatalogueUnavailable, redact_url

HERE = Path(__file__).resolve().parent

#: front-end files from the npm packages (`npm ci`), by the path the app serves them under /vendor/
VENDOR_FILES: dict[str, str] = {
    "model-viewer.min.js": "@google/model-viewer/dist/model-viewer.min.js",
    "draco/draco_decoder.js": "three/examples/jsm/libs/draco/gltf/draco_decoder.js",
    "draco/draco_decoder.wasm": "three/examples/jsm/libs/draco/gltf/draco_decoder.wasm",
    "draco/draco_wasm_wrapper.js": "three/examples/jsm/libs/draco/gltf/draco_wasm_wrapper.js",
    "basis/basis_transcoder.js": "three/examples/jsm/libs/basis/basis_transcoder.js",
    "basis/basis_transcoder.wasm": "three/examples/jsm/libs/basis/basis_transcoder.wasm",
}


@dataclass
class State:
    """The app's shared state (``app.state.review``)."""

    settings: ServeSettings
    catalogue_url: str
    buckets: Buckets
    reviewers: Reviewers
    templates: Jinja2Templates
    vendor: dict[str, Path]
    static: dict[str, Path]
    _catalogue: Catalogue | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def catalogue_shown(self) -> str:
        return redact_url(self.catalogue_url)

    @property
    def viewer_available(self) -> bool:
        return "model-viewer.min.js" in self.vendor

    def catalogue(self) -> Catalogue:
        """The catalogue (one engine for the app); a SQLite file that vanished is never re-created."""
        path = missing_sqlite_file(self.catalogue_url)
        if path is not None:
            raise CatalogueUnavailable(f"catalogue {self.catalogue_shown}: no database file at {path}", reason="no_database")
        with self._lock:
            if self._catalogue is None:
                self._catalogue = Catalogue(self.catalogue_url)
            return self._catalogue

    def close(self) -> None:
        with self._lock:
            if self._catalogue is not None:
                self._catalogue.close()
                self._catalogue = None


def vendor_files(node_modules: Path) -> dict[str, Path]:
    """The `VENDOR_FILES` present under ``node_modules``."""
    found = {name: node_modules / rel for name, rel in VENDOR_FILES.items()}
    return {name: path for name, path in found.items() if path.is_file()}


def static_files() -> dict[str, Path]:
    """The app's own stylesheet and scripts, by file name."""
    return {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}


def get_state(request: Request) -> State:
    return request.app.state.review  # type: ignore[no-any-return]


def identify(request: Request, *, allow_session: bool) -> Identity | None:
    """Who is asking: the Authorization header, else (where allowed) the session cookie.

    Raises
    ------
    AuthError
        Credentials given, and wrong.
    """
    st = get_state(request)
    ident = from_header(request.headers.get("authorization"), st.reviewers)
    if ident is None and allow_session:
        ident = from_session(
            request.cookies.get(SESSION_COOKIE), st.reviewers, st.settings.signing_key,
            max_age_s=st.settings.session_hours * 3600,
        )  # fmt: skip
    request.state.identity = ident
    return ident


def reader(request: Request) -> Identity | None:
    """Dependency of every read: an identity, or anonymous where ``anonymous_read`` allows it."""
    ident = identify(request, allow_session=True)
    if ident is None and not get_state(request).settings.anonymous_read:
        raise AuthRequired("sign in as a reviewer (or send a bearer token) to read the catalogue")
    return ident


def api_writer(request: Request) -> Identity:
    """Dependency of the API's writes: a reviewer from the Authorization header (no cookies), JSON body."""
    ident = identify(request, allow_session=False)
    if ident is None:
        raise AuthRequired("reviews need a reviewer: send 'Authorization: Bearer TOKEN' or basic auth (name, token)")
    return ident


def csrf_token_for(request: Request) -> tuple[str, bool]:
    """The request's valid CSRF token, or a new one; True when it is new (the cookie must be set)."""
    key = get_state(request).settings.signing_key
    token = request.cookies.get(CSRF_COOKIE)
    if token and csrf_valid(key, token):
        return token, False
    return new_csrf(key), True


def set_cookie(response: Any, request: Request, name: str, value: str, *, max_age: int | None = None) -> None:
    st = get_state(request)
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", secure=st.settings.cookie_secure, path="/"
    )


def render(request: Request, template: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """A page: the template with the CSRF token, who is signed in, and the catalogue's (redacted) URL."""
    st = get_state(request)
    csrf, fresh = csrf_token_for(request)
    me = getattr(request.state, "identity", None)
    if me is None:
        try:
            me = identify(request, allow_session=True)
        except AuthError:
            me = None
    ctx = {
        "csrf_token": csrf, "me": me, "version": __version__, "catalogue_shown": st.catalogue_shown,
        "anonymous_read": st.settings.anonymous_read, **context,
    }  # fmt: skip
    response = st.templates.TemplateResponse(request, template, ctx, status_code=status_code)
    if fresh:
        set_cookie(response, request, CSRF_COOKIE, csrf)
    return response
