"""A failed CSRF check answers with the platform's own page (cdp.csrf): the error layout, words a
person can act on, no inline style (the CSP would block it, as it blocked Django's own page), and a
plain-text sentence for htmx requests (static/js/app.js shows it in a toast)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse


@pytest.mark.django_db
def test_a_form_without_its_token_gets_the_styled_page_that_says_what_to_do(settings) -> None:
    settings.DEBUG = False
    response = Client(enforce_csrf_checks=True).post(reverse("accounts:login"), {"email": "a@example.com", "password": "x"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "This form has expired" in html and "Reload the page and try again" in html
    assert "<style" not in html and "Reason:" not in html  # no inline style; Django's reason only with DEBUG
    assert 'rel="stylesheet"' in html  # the platform's layout and its stylesheets


@pytest.mark.django_db
def test_debug_shows_django_reason(settings) -> None:
    settings.DEBUG = True
    response = Client(enforce_csrf_checks=True).post(reverse("accounts:login"), {})
    assert response.status_code == 403
    assert "Reason: CSRF cookie not set." in response.content.decode()


@pytest.mark.django_db
def test_an_htmx_request_gets_one_plain_sentence() -> None:
    response = Client(enforce_csrf_checks=True).post(reverse("accounts:login"), {}, HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode().startswith("The form could not be sent because its security token")
