"""The shell: styled error pages, the dashboard's content by role, and its query budget."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import path

from accounts.access import Actor
from accounts.audit import audit_log


def _boom(request):
    raise RuntimeError("boom")


urlpatterns = [path("boom/", _boom)]


def test_an_unknown_page_is_a_styled_404(login, olivia):
    response = login(olivia).get("/no/such/page/")
    assert response.status_code == 404
    assert b"We couldn't find that page" in response.content
    assert b"/static/css/app.css" in response.content


def test_a_forbidden_page_is_a_styled_403_that_says_why(login, bob):
    response = login(bob).get("/settings/audit/")
    assert response.status_code == 403
    assert b"You can't do that here" in response.content
    assert b"read the audit log" in response.content


@override_settings(ROOT_URLCONF=__name__)
def test_a_server_error_is_a_styled_500(db):
    client = Client(raise_request_exception=False)
    response = client.get("/boom/")
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content


def test_the_dashboard_shows_the_account_and_its_activity(login, olivia, alice, acme):
    for _ in range(3):
        audit_log(account=acme, actor=Actor(user=alice), verb="account.updated", target=acme)
    response = login(olivia).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme" in html and "activity-data" in html
    assert html.count("changed account settings") == 3
    activity = response.context["activity"]
    assert len(activity["labels"]) == 14 and activity["values"][-1] == 3


@pytest.mark.parametrize("who", ["olivia", "bob"])
def test_the_dashboard_keeps_its_query_budget(request, login, who, acme, django_assert_max_num_queries):
    client = login(request.getfixturevalue(who))
    client.get("/")  # warm the session
    with django_assert_max_num_queries(11):
        assert client.get("/").status_code == 200


def test_the_liveness_check_answers_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
