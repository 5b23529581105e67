from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, LoginAttempt
from conftest import PASSWORD

LOGIN = "/login/"


def _login(client: Client, email: str, password: str, **extra):
    return client.post(LOGIN, {"email": email, "password": password}, **extra)


def test_it_signs_in_and_lands_on_the_dashboard(olivia):
    client = Client()
    response = _login(client, "OLIVIA@acme.test", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert b"Acme" in page.content
    assert AuditEvent.objects.filter(verb="auth.login", actor=olivia).exists()


def test_it_refuses_a_wrong_password_with_an_inline_error(olivia):
    response = _login(Client(), "olivia@acme.test", "wrong")
    assert response.status_code == 401
    assert b"do not match" in response.content


def test_it_follows_only_local_next_urls(olivia):
    client = Client()
    assert _login(client, "olivia@acme.test", PASSWORD, QUERY_STRING="")["Location"] == "/"
    client = Client()
    r = client.post(LOGIN, {"email": "olivia@acme.test", "password": PASSWORD, "next": "https://evil.test/"})
    assert r["Location"] == "/"
    client = Client()
    r = client.post(LOGIN, {"email": "olivia@acme.test", "password": PASSWORD, "next": "/settings/members/"})
    assert r["Location"] == "/settings/members/"


def test_it_locks_out_after_five_failures_even_with_the_right_password(olivia):
    client = Client()
    for _ in range(5):
        assert _login(client, "olivia@acme.test", "wrong").status_code == 401
    response = _login(client, "olivia@acme.test", PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(verb="auth.locked_out").exists()


def test_it_unlocks_when_the_window_has_passed(olivia, settings):
    client = Client()
    for _ in range(5):
        _login(client, "olivia@acme.test", "wrong")
    LoginAttempt.objects.update(created_at=timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS + 1))
    assert _login(client, "olivia@acme.test", PASSWORD).status_code == 302


def test_it_forgets_failures_before_a_success(olivia):
    client = Client()
    for _ in range(4):
        _login(client, "olivia@acme.test", "wrong")
    assert _login(client, "olivia@acme.test", PASSWORD).status_code == 302
    other = Client()
    for _ in range(4):
        _login(other, "olivia@acme.test", "wrong")
    assert _login(other, "olivia@acme.test", PASSWORD).status_code == 302


def test_it_locks_an_address_spraying_many_emails(olivia, alice):
    client = Client()
    for i in range(20):
        _login(client, f"nobody{i}@acme.test", "wrong")
    # alice has no failures of her own, but the IP address is locked
    assert _login(client, "alice@acme.test", PASSWORD).status_code == 429


def test_it_signs_out_only_by_post(login, olivia):
    client = login(olivia)
    assert client.get("/logout/").status_code == 405
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/")["Location"].startswith("/login/")


def test_it_requires_csrf_on_login():
    client = Client(enforce_csrf_checks=True)
    assert client.post(LOGIN, {"email": "a@b.c", "password": "x"}).status_code == 403


def test_it_emails_a_password_reset_link_that_works(olivia, smtp_server, settings):
    settings.SITE_URL = "http://testserver"
    client = Client()
    response = client.post("/password/reset/", {"email": "olivia@acme.test"})
    assert response.status_code == 302
    (message,) = smtp_server.wait_for(1)
    assert message["To"] == "olivia@acme.test"
    link = re.search(r"http://testserver(/password/reset/\S+/)", smtp_server.text_of(message)).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    set_url = form.redirect_chain[-1][0] if form.redirect_chain else link
    new = "a brand new long passphrase"
    done = client.post(set_url, {"new_password1": new, "new_password2": new})
    assert done.status_code == 302
    assert Client().login(username="olivia@acme.test", password=new)
    assert AuditEvent.objects.filter(verb="auth.password_reset", actor=olivia).exists()


def test_it_does_not_reveal_whether_an_address_exists(db, smtp_server):
    response = Client().post("/password/reset/", {"email": "ghost@nowhere.test"})
    assert response.status_code == 302
    assert smtp_server.messages == []


def test_it_changes_the_password(login, olivia):
    client = login(olivia)
    new = "another long passphrase here"
    r = client.post("/password/change/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert r.status_code == 302
    assert Client().login(username="olivia@acme.test", password=new)


@pytest.mark.parametrize("path", ["/", "/settings/members/", "/jobs/", "/settings/audit/"])
def test_it_sends_anonymous_visitors_to_sign_in(db, path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_it_explains_when_a_user_has_no_account(db, login):
    from accounts.tests.factories import UserFactory

    lonely = UserFactory(email="lonely@x.test")
    client = login(lonely)
    response = client.get("/")
    assert response["Location"] == "/no-account/"
    assert b"don't belong to an account" in client.get("/no-account/").content
