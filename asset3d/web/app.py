"""The review app: `create_app` builds the FastAPI application ``asset3d serve`` runs.

Pages (`asset3d.web.pages`), the JSON API under ``/api/`` (`asset3d.web.api`, schema at
``/openapi.json``) and files (`asset3d.web.serving`). Errors become a clear page (or JSON under ``/api/``
and ``/files/``), never a stack trace: 400 bad filter, 401 no or wrong credentials (pages redirect to the
sign-in form), 403 CSRF or a file outside the buckets, 404 unknown asset id or file, 409 a refused
transition, 502 publishing failed, 503 the catalogue or a bucket is unreachable.

Every response carries a Content-Security-Policy that allows this origin only: the viewer, its Draco
decoder and everything else come from the app, never a CDN.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from asset3d import __version__
from asset3d.web import api, pages, serving
from asset3d.web.api import UnsupportedMediaType
from asset3d.web.files import Buckets, OutsideBuckets
from asset3d.web.reviewers import ReviewerError, Reviewers
from asset3d.web.security import AuthError, AuthRequired, CsrfRefused
from asset3d.web.settings import ServeSettings, bucket_roots, load_serve_settings
from asset3d.web.state import HERE, State, render, static_files, vendor_files
from asset3d.web.views import BadQuery
from storage import InvalidKey, ObjectNotFound, StorageError
from storage.catalogue import (
    CatalogueUnavailable,
    InvalidInput,
    NotFound,
    TransitionRefused,
    catalogue_url,
    redact_secrets,
)

log = logging.getLogger(__name__)

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "connect-src 'self' data: blob:",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
])  # fmt: skip
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to every HTTP response (streamed ones too)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The review app over the catalogue and buckets ``settings`` name (default: `load_serve_settings`).

    Nothing is opened here: an unreachable catalogue or bucket is an error page per request, not a crash.
    """
    s = settings or load_serve_settings()
    state = State(
        settings=s,
        catalogue_url=catalogue_url(s.catalogue_url),
        buckets=Buckets(bucket_roots(s)),
        reviewers=Reviewers(s.reviewers_file),
        templates=Jinja2Templates(directory=str(HERE / "templates")),
        vendor=vendor_files(s.npm_folder),
        static=static_files(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        yield
        state.close()

    app = FastAPI(
        title="asset3d review",
        version=__version__,
        description="Review 3D assets: the queue, one asset in full, decisions that publish or unpublish.",
        openapi_url="/openapi.json",
        docs_url=None,  # the Swagger page loads its scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.review = state
    app.include_router(api.router)
    app.include_router(serving.router)
    app.include_router(pages.router)
    _add_error_handlers(app)
    app.add_middleware(SecurityHeaders)
    return app


# -- errors --------------------------------------------------------------------------------------------------


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith(("/api/", "/files/", "/vendor/", "/static/")) or path == "/openapi.json"


def error_response(
    request: Request, status: int, title: str, message: str, reason: str, *, headers: dict[str, str] | None = None
) -> Response:
    """JSON ``{"detail", "reason"}`` for the API and files, else the error page."""
    if _wants_json(request):
        return JSONResponse({"detail": message, "reason": reason}, status_code=status, headers=headers)
    response = render(request, "error.html", {"title": title, "message": message, "reason": reason, "status": status},
                      status_code=status)  # fmt: skip
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def _add_error_handlers(app: FastAPI) -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="asset3d review"'}

    async def auth_required(request: Request, err: Exception) -> Response:
        if request.method == "GET" and not _wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return error_response(request, 401, "Sign in to continue", str(err), "auth_required", headers=challenge)

    async def auth_error(request: Request, err: Exception) -> Response:
        return error_response(request, 401, "Wrong credentials", str(err), "bad_credentials", headers=challenge)

    async def csrf(request: Request, err: Exception) -> Response:
        return error_response(request, 403, "Form refused", str(err), "csrf")

    async def outside(request: Request, err: Exception) -> Response:
        log.warning("refused a file outside the buckets: %s", err)
        return error_response(request, 403, "Not served", "that file is not in a configured bucket", "outside_buckets")

    async def not_found(request: Request, err: Exception) -> Response:
        return error_response(request, 404, "Not found", str(err), "not_found")

    async def refused(request: Request, err: Exception) -> Response:
        return error_response(request, 409, "Decision refused", str(err), str(getattr(err, "reason", "refused")))

    async def bad_input(request: Request, err: Exception) -> Response:
        return error_response(request, 400, "Bad request", str(err), str(getattr(err, "reason", "invalid_input")))

    async def media(request: Request, err: Exception) -> Response:
        return error_response(request, 415, "Unsupported media type", str(err), "unsupported_media_type")

    async def catalogue_down(request: Request, err: Exception) -> Response:
        reason = str(getattr(err, "reason", "unreachable"))
        return error_response(request, 503, "The catalogue is unreachable", str(err), reason)

    async def storage(request: Request, err: Exception) -> Response:
        message = redact_secrets(str(err))
        return error_response(request, 503, "A bucket is unreachable", message, str(getattr(err, "reason", "storage_error")))

    async def reviewers_file(request: Request, err: Exception) -> Response:
        return error_response(request, 503, "The reviewers file is unreadable", str(err), "bad_reviewers_file")

    async def stage(request: Request, err: Exception) -> Response:
        reason = str(getattr(err, "reason", "publish_failed"))
        status = 503 if getattr(err, "transient", False) else 502
        return error_response(request, status, "Publishing failed; the asset keeps its status", redact_secrets(str(err)), reason)

    async def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, StarletteHTTPException)
        return error_response(request, err.status_code, "Error", str(err.detail), "http_error", headers=err.headers)

    async def validation(request: Request, err: Exception) -> Response:
        assert isinstance(err, RequestValidationError)
        if _wants_json(request):
            return JSONResponse({"detail": jsonable_encoder(err.errors()), "reason": "invalid_request"}, status_code=422)
        return error_response(request, 422, "Bad request", "the request's parameters are not valid", "invalid_request")

    async def unexpected(request: Request, err: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        message = f"{type(err).__name__}: {redact_secrets(str(err)).splitlines()[0] if str(err) else ''}"
        return error_response(request, 500, "Something went wrong", message, "unexpected_error")

    from asset3d.pipeline.errors import StageError

    for exc, handler in (
        (AuthRequired, auth_required), (AuthError, auth_error), (CsrfRefused, csrf), (OutsideBuckets, outside),
        (InvalidKey, outside), (NotFound, not_found), (ObjectNotFound, not_found), (TransitionRefused, refused), (BadQuery, bad_input),
        (InvalidInput, bad_input), (UnsupportedMediaType, media), (CatalogueUnavailable, catalogue_down),
        (StorageError, storage), (ReviewerError, reviewers_file), (StageError, stage),
        (StarletteHTTPException, http_error), (RequestValidationError, validation), (Exception, unexpected),
    ):  # fmt: skip
        app.add_exception_handler(exc, handler)
