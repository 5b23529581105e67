from __future__ import annotations

from accounts.access import Actor
from accounts.models import Membership
from accounts.permissions import Role
from accounts.services import api_token_create


def test_a_member_of_two_accounts_switches_and_sees_only_the_current_one(login, olivia, adam, charlie, acme, globex):
    Membership.objects.create(account=globex, user=olivia, role=Role.ANALYST)
    api_token_create(account=acme, name="acme-secret-token", role=Role.ADMIN, actor=Actor.system())
    client = login(olivia, acme)
    members = client.get("/settings/members/")
    assert b"adam@acme.test" in members.content and b"charlie@globex.test" not in members.content
    assert b"acme-secret-token" in client.get("/settings/api-tokens/").content

    response = client.post("/account/switch/", {"account": globex.pk})
    assert response.status_code == 302
    dashboard = client.get("/")
    assert b"Globex" in dashboard.content
    # As analyst in Globex: no settings, and nothing of Acme anywhere
    assert client.get("/settings/members/").status_code == 403
    assert client.get("/settings/api-tokens/").status_code == 403
    assert b"adam@acme.test" not in dashboard.content


def test_it_refuses_to_switch_to_an_account_the_user_is_not_in(login, olivia, globex, acme):
    client = login(olivia, acme)
    assert client.post("/account/switch/", {"account": globex.pk}).status_code == 404
    assert b"Acme" in client.get("/").content


def test_it_falls_back_when_the_current_account_membership_is_gone(login, olivia, acme, globex):
    other = Membership.objects.create(account=globex, user=olivia, role=Role.OWNER)
    client = login(olivia, globex)
    assert b"Globex" in client.get("/").content
    other.delete()
    assert b"Acme" in client.get("/").content


def test_switching_needs_a_post_with_csrf(olivia, acme, globex):
    from django.test import Client

    Membership.objects.create(account=globex, user=olivia, role=Role.OWNER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(olivia)
    assert client.get("/account/switch/").status_code == 405
    assert client.post("/account/switch/", {"account": globex.pk}).status_code == 403


def test_the_layout_takes_the_account_list_the_middleware_read_even_an_empty_one(rf, olivia,
                                                                               django_assert_num_queries):
    from accounts.context_processors import current_account

    request = rf.get("/")
    request.user = olivia
    request.user_accounts = []  # CurrentAccountMiddleware: a signed-in person with no account
    with django_assert_num_queries(0):
        assert list(current_account(request)["user_accounts"]) == []
