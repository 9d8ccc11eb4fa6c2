"""The review app's pages (server-rendered Jinja2 templates; forms, no front-end build step).

    GET  /                          the queue: needs_review first, then newest; filters; paging
    GET  /assets/{asset_id}         one asset: 3D viewer, previews, photo, intake mask, gate, metrics, provenance
    POST /assets/{asset_id}/review  approve or reject with a comment (CSRF token; the signed-in reviewer)
    GET  /overview                  counts by status, metric distributions, recent failures
    GET  /login, POST /login, POST /logout
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from asset3d.web.charts import STATUS_COLOURS, distribution_svg, status_bar_svg
from asset3d.web.present import HELD, fmt_number, gate_view
from asset3d.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    AuthRequired,
    Identity,
    check_csrf,
    make_session,
)
from asset3d.web.state import get_state, identify, reader, render, set_cookie
from asset3d.web.views import DECISIONS, BadQuery, apply_review, load_asset, overview, parse_queue, queue_page
from storage.catalogue import AssetStatus

router = APIRouter(include_in_schema=False)
Reader = Annotated[Identity | None, Depends(reader)]


def _helpers() -> dict[str, object]:
    return {"fmt": fmt_number, "status_colours": STATUS_COLOURS, "held": {s.value for s in HELD}}


@router.get("/", response_class=HTMLResponse)
def queue(
    request: Request,
    me: Reader,
    status: Annotated[list[str] | None, Query()] = None,
    sku: str = "",
    run: str = "",
    metric: Annotated[list[str] | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    status, metric = status or [], metric or []
    st = get_state(request)
    cat = st.catalogue()
    names = cat.metric_names()
    context = {
        "statuses": [s.value for s in AssetStatus], "metric_names": names,
        "form": {"status": status, "sku": sku, "run": run, "metric": [m for m in metric if m]},
        "assets": [], "total": 0, "page": page, "pages": 1, "error": None, "gate_view": gate_view, **_helpers(),
    }  # fmt: skip
    try:
        q = parse_queue(cat, status, sku, run, metric)
    except BadQuery as err:
        return render(request, "queue.html", {**context, "error": str(err)}, status_code=400)
    size = st.settings.page_size
    assets, total = queue_page(cat, q, limit=size, offset=(page - 1) * size)
    pages = max(1, -(-total // size))
    base = [("status", s) for s in q.statuses or []] + [("sku", q.sku or ""), ("run", run)]
    base += [("metric", m) for m in q.raw_metrics]

    def page_url(n: int) -> str:
        return "/?" + urlencode([(k, v) for k, v in base if v] + [("page", str(n))])

    context.update(assets=assets, total=total, pages=pages, first=(page - 1) * size + 1, page_url=page_url)
    return render(request, "queue.html", context)


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
def asset_page(request: Request, asset_id: int, me: Reader, done: str = "") -> Response:
    st = get_state(request)
    view = load_asset(st.catalogue(), st.buckets, asset_id)
    return render(
        request, "asset.html",
        {"v": view, "a": view.detail.asset, "done": done if done in DECISIONS else "", "viewer_available": st.viewer_available,
         **_helpers()},
    )  # fmt: skip


@router.post("/assets/{asset_id}/review")
async def review_form(request: Request, asset_id: int) -> Response:
    """Approve or reject from the asset page: CSRF token first (403), then a reviewer (401)."""
    st = get_state(request)
    form = await request.form()
    check_csrf(st.settings.signing_key, request.cookies.get(CSRF_COOKIE), _text(form.get(CSRF_FIELD)))
    me = identify(request, allow_session=True)
    if me is None:
        raise AuthRequired("sign in as a reviewer to review")
    decision = _text(form.get("decision"))
    comment = _text(form.get("comment"))
    await run_in_threadpool(apply_review, st.catalogue(), asset_id, decision, reviewer=me.reviewer, comment=comment)
    return RedirectResponse(f"/assets/{asset_id}?done={decision}", status_code=303)


@router.get("/overview", response_class=HTMLResponse)
def overview_page(request: Request, me: Reader) -> Response:
    st = get_state(request)
    ov = overview(st.catalogue())
    charts = {name: distribution_svg(name, d) for name, d in ov.distributions.items()}
    return render(
        request, "overview.html", {"ov": ov, "charts": charts, "status_bar": status_bar_svg(ov.counts), **_helpers()}
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    st = get_state(request)
    form = await request.form()
    check_csrf(st.settings.signing_key, request.cookies.get(CSRF_COOKIE), _text(form.get(CSRF_FIELD)))
    name, token, nxt = _text(form.get("reviewer")).strip(), _text(form.get("token")).strip(), _safe_next(_text(form.get("next")))
    if not (name and token and st.reviewers.check(name, token)):
        return render(request, "login.html", {"next": nxt, "error": "wrong reviewer name or token"}, status_code=401)
    response = RedirectResponse(nxt, status_code=303)
    fingerprint = st.reviewers.fingerprint(name) or ""
    value = make_session(st.settings.signing_key, name, fingerprint)
    set_cookie(response, request, SESSION_COOKIE, value, max_age=int(st.settings.session_hours * 3600))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    st = get_state(request)
    form = await request.form()
    check_csrf(st.settings.signing_key, request.cookies.get(CSRF_COOKIE), _text(form.get(CSRF_FIELD)))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _safe_next(target: str | None) -> str:
    """A local path to go back to after signing in (never another site)."""
    t = target or "/"
    if not t.startswith("/") or t.startswith("//") or "\\" in t or any(ord(c) < 32 for c in t):
        return "/"
    return t
