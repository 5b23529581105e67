"""The page shown when a form's CSRF check fails (settings.CSRF_FAILURE_VIEW).

Django's own page carries an inline <style>, which the Content-Security-Policy blocks: it showed
unstyled. This one is the platform's error layout (templates/403_csrf.html), says what most likely
happened in words a marketer can act on (the page was open too long, the session changed, cookies
are blocked) and, with DEBUG on, Django's reason. An htmx request gets the same words as a short
fragment (the layout's error toast shows it) rather than a whole page swapped into a table.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.template.loader import render_to_string
from django.utils.html import escape

MESSAGE = ("The form could not be sent because its security token is missing or out of date. This happens when "
           "a page stays open while you sign in again or switch account, or when the browser blocks cookies "
           "for this site. Reload the page and try again.")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if request.headers.get("HX-Request") == "true":
        return HttpResponseForbidden(escape(MESSAGE), content_type="text/plain; charset=utf-8")
    html = render_to_string("403_csrf.html", {"message": MESSAGE, "reason": reason if settings.DEBUG else ""},
                            request=request)
    return HttpResponseForbidden(html)
