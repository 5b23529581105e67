"""Open pixel and click redirect (mounted at /t/): verify the token, flag machines, buffer the
hit, answer at once. No login, no CSRF (GET/HEAD only, nothing a third party can forge: the token
is signed), and no database write in the request when Redis is there (see history.tracking)."""

from __future__ import annotations

import base64
import logging

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.access import client_ip
from history import tracking

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = "no-store, no-cache, must-revalidate, max-age=0, private"


def _record(request: HttpRequest, kind: str, token: str, claims: tracking.Claims) -> None:
    """The replay check and the buffering in one Redis round trip (tracking.record_hit_once)."""
    ua = request.headers.get("User-Agent", "")
    reason = tracking.machine_reason(method=request.method or "GET", user_agent=ua, ip=client_ip(request),
                                     sent_at=claims.sent_at, now=tracking.now_epoch(), kind=kind)
    tracking.record_hit_once(kind, token, tracking.hit_payload(kind, claims, reason=reason, user_agent=ua))


@require_http_methods(["GET", "HEAD"])
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """A 1x1 transparent GIF, always (a broken image helps nobody); a valid token records an open."""
    try:
        claims = tracking.read_token(token)
    except tracking.BadToken as exc:
        log.info("tracking: open with a bad token (%s)", exc)
    else:
        _record(request, "open", token, claims)
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = NO_STORE
    response["X-Robots-Tag"] = "noindex"
    return response


@require_http_methods(["GET", "HEAD"])
def click(request: HttpRequest, token: str) -> HttpResponse:
    """Redirect to the stored link the token names (of the token's account); record the click."""
    try:
        claims = tracking.read_token(token)
    except tracking.BadToken as exc:
        log.info("tracking: click with a bad token (%s)", exc)
        return _dead_link(request)
    url = tracking.link_url(claims.account_id, claims.link_id) if claims.link_id else None
    if url is None:
        return _dead_link(request)
    _record(request, "click", token, claims)
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = NO_STORE
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response


def _dead_link(request: HttpRequest) -> HttpResponse:
    return render(request, "history/dead_link.html", status=404)
