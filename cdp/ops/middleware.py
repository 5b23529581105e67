"""Request ids: an incoming X-Request-ID (from the load balancer) is kept when it looks like an
id, else a new one is made; it is in the log context for the request and in the response."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from cdp.ops.logs import request_id_var

HEADER = "X-Request-ID"
# A proxy's id is trusted only as far as its shape: it goes into logs, so no spaces, quotes or
# newlines (log injection), and not longer than a UUID with a prefix.
_VALID = re.compile(r"[A-Za-z0-9._:-]{8,80}")


class RequestIdMiddleware:
    """Sets `request.request_id` and the log context's request id; adds X-Request-ID to the
    response. Put it first in MIDDLEWARE so every later log line of the request carries the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        request_id = incoming if _VALID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        # Not reset after the response: Django logs 4xx/5xx ("Not Found: /x") in the handler,
        # after the middleware chain has returned, and that line must carry the id too. The next
        # request on this thread sets its own (each ASGI request runs in a copied context).
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response
