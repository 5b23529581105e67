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
    # session, user, memberships (with the switcher's accounts), activity per day, the four counts
    # in one statement, recent jobs, recent events
    with django_assert_max_num_queries(7):
        assert client.get("/").status_code == 200


def test_the_liveness_check_answers_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_the_dashboard_counts_what_each_table_holds(login, olivia, alice, bob, acme, globex, charlie):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import ApiToken, Invitation, Job
    from accounts.permissions import Role

    now = timezone.now()
    Invitation.objects.create(account=acme, email="new@acme.test", role=Role.ANALYST, invited_by=olivia,
                              key_hash="a" * 64, expires_at=now + timedelta(days=3))
    Invitation.objects.create(account=acme, email="old@acme.test", role=Role.ANALYST, invited_by=olivia,
                              key_hash="b" * 64, expires_at=now - timedelta(days=1))
    ApiToken.objects.create(account=acme, name="live", token_hash="c" * 64, hint="cdp_c")
    ApiToken.objects.create(account=acme, name="revoked", token_hash="d" * 64, hint="cdp_d", revoked_at=now)
    ApiToken.objects.create(account=globex, name="other", token_hash="e" * 64, hint="cdp_e")
    Job.objects.create(account=acme, kind="export", title="Export", state=Job.State.RUNNING)
    Job.objects.create(account=acme, kind="export", title="Export", state=Job.State.SUCCEEDED)
    stats = login(olivia).get("/").context["stats"]
    assert {k: stats[k] for k in ("members", "pending_invitations", "api_tokens", "jobs_running")} == {
        "members": 3, "pending_invitations": 1, "api_tokens": 1, "jobs_running": 1}


def test_the_sidebar_is_shared_by_role_and_section_only(login, olivia, bob, acme):
    owner = login(olivia).get("/").content.decode()
    analyst = login(bob).get("/").content.decode()  # the same section, after the owner's copy was made
    audit_link = 'class="nav-link " href="/settings/audit/"'
    assert audit_link in owner and audit_link not in analyst
    mailings = login(bob).get("/mailings/").content.decode()
    assert 'class="nav-link active" href="/mailings/"' in mailings
    assert 'class="nav-link active" href="/"' in analyst and 'class="nav-link active" href="/"' not in mailings


def test_the_account_switcher_lists_every_account_without_a_query_of_its_own(
        login, olivia, acme, globex, django_assert_max_num_queries):
    from accounts.models import Membership
    from accounts.permissions import Role

    Membership.objects.create(account=globex, user=olivia, role=Role.ANALYST)
    client = login(olivia, acme)
    client.get("/")
    with django_assert_max_num_queries(7) as queries:
        html = client.get("/").content.decode()
    assert 'data-account="acme"' in html and 'data-account="globex"' in html
    assert html.index('data-account="acme"') < html.index('data-account="globex"')
    assert not [q for q in queries.captured_queries if 'FROM "accounts_account"' in q["sql"]]
