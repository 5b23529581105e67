from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.access import Actor
from accounts.models import AuditEvent, Invitation, Membership
from accounts.permissions import Role
from accounts.services import AccountError, invitation_create, membership_change_role, membership_remove
from accounts.tests.factories import MembershipFactory, UserFactory


def _invite(client, email="newbie@acme.test", role="marketer", **kw):
    return client.post("/settings/members/invite/", {"email": email, "role": role}, **kw)


def _link_from(smtp_server, n=1) -> str:
    message = smtp_server.wait_for(n)[n - 1]
    return re.search(r"http://testserver(/invite/\S+/)", smtp_server.text_of(message)).group(1)


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = "http://testserver"


def test_it_invites_by_email_and_the_colleague_joins_with_a_password(
    login, olivia, acme, smtp_server, django_capture_on_commit_callbacks
):
    client = login(olivia)
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(client, role="analyst")
    assert response.status_code == 302
    (message,) = smtp_server.wait_for(1)
    assert message["To"] == "newbie@acme.test"
    assert "Acme" in message["Subject"]
    assert smtp_server.envelopes[0][1] == ["newbie@acme.test"]
    link = _link_from(smtp_server)

    newbie = Client()
    page = newbie.get(link)
    assert page.status_code == 200 and b"Join Acme" in page.content
    done = newbie.post(link, {"full_name": "New Bie", "password1": "a good long passphrase", "password2": "a good long passphrase"})
    assert done.status_code == 302 and done["Location"] == "/"
    membership = Membership.objects.get(user__email="newbie@acme.test")
    assert membership.account == acme and membership.role == Role.ANALYST
    dashboard = newbie.get("/")
    assert dashboard.status_code == 200
    assert b"/settings/members/" not in dashboard.content  # the analyst sees no settings
    assert newbie.get("/settings/members/").status_code == 403
    assert Invitation.objects.get().state == "accepted"
    assert newbie.get(link).status_code == 410  # used once
    assert AuditEvent.objects.filter(account=acme, verb="member.joined").exists()


def test_it_never_stores_the_invitation_key(login, olivia, smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _invite(login(olivia))
    key = _link_from(smtp_server).split("/")[2]
    stored = Invitation.objects.values_list("key_hash", flat=True).get()
    assert key not in stored and len(stored) == 64


def test_it_rejects_passwords_that_differ_or_are_weak(login, olivia, smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _invite(login(olivia))
    link = _link_from(smtp_server)
    c = Client()
    r = c.post(link, {"full_name": "N", "password1": "a good long passphrase", "password2": "different passphrase"})
    assert r.status_code == 200 and b"differ" in r.content
    r = c.post(link, {"full_name": "N", "password1": "12345678901", "password2": "12345678901"})
    assert r.status_code == 200 and b"entirely numeric" in r.content
    assert not Membership.objects.filter(user__email="newbie@acme.test").exists()


def test_an_existing_user_signs_in_and_accepts(login, olivia, charlie, acme, smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _invite(login(olivia), email="charlie@globex.test")
    link = _link_from(smtp_server)
    assert b"Sign in to accept" in Client().get(link).content
    client = login(charlie)
    r = client.post(link)
    assert r.status_code == 302
    assert Membership.objects.filter(account=acme, user=charlie, role=Role.MARKETER).exists()


def test_it_refuses_an_invitation_for_another_address(login, olivia, adam, smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _invite(login(olivia), email="someone@else.test")
    link = _link_from(smtp_server)
    client = login(adam)
    client.post(link)
    assert not Membership.objects.filter(user__email="someone@else.test").exists()
    assert Invitation.objects.get().state == "pending"


def test_it_rejects_an_unknown_link(db):
    assert Client().get("/invite/not-a-real-key/").status_code == 404


def test_a_revoked_invitation_no_longer_works(login, olivia, smtp_server, django_capture_on_commit_callbacks):
    client = login(olivia)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(client)
    link = _link_from(smtp_server)
    invitation = Invitation.objects.get()
    client.post(f"/settings/invitations/{invitation.pk}/revoke/")
    assert Client().get(link).status_code == 410


def test_resending_invalidates_the_old_link(login, olivia, smtp_server, django_capture_on_commit_callbacks):
    client = login(olivia)
    with django_capture_on_commit_callbacks(execute=True):
        _invite(client)
    first = _link_from(smtp_server, 1)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/settings/invitations/{Invitation.objects.get().pk}/resend/")
    second = _link_from(smtp_server, 2)
    assert first != second
    assert Client().get(first).status_code == 404
    assert Client().get(second).status_code == 200


def test_an_admin_cannot_invite_an_owner(login, adam):
    response = _invite(login(adam), role="owner")
    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_it_refuses_to_invite_an_existing_member(login, olivia, alice):
    response = _invite(login(olivia), email="ALICE@acme.test")
    assert response.status_code == 400
    assert b"already a member" in response.content


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_marketers_and_analysts_cannot_manage_members(request, login, who, olivia):
    client = login(request.getfixturevalue(who))
    assert client.get("/settings/members/").status_code == 403
    assert _invite(client).status_code == 403
    membership = Membership.objects.get(user=olivia)
    assert client.post(f"/settings/members/{membership.pk}/role/", {"role": "analyst"}).status_code == 403


def test_it_changes_a_role_and_audits_it(login, olivia, alice, acme):
    membership = Membership.objects.get(user=alice)
    r = login(olivia).post(f"/settings/members/{membership.pk}/role/", {"role": "admin"})
    assert r.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    event = AuditEvent.objects.get(verb="member.role_changed")
    assert event.data == {"from": "marketer", "to": "admin"} and event.actor == olivia


def test_an_admin_cannot_demote_an_owner(login, olivia, adam):
    owner = Membership.objects.get(user=olivia)
    login(adam).post(f"/settings/members/{owner.pk}/role/", {"role": "analyst"})
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_the_last_owner_cannot_leave_or_be_demoted(olivia, acme):
    owner = Membership.objects.get(user=olivia)
    with pytest.raises(AccountError, match="at least one owner"):
        membership_change_role(membership=owner, role=Role.ADMIN, actor=Actor(user=olivia))
    with pytest.raises(AccountError, match="at least one owner"):
        membership_remove(membership=owner, actor=Actor(user=olivia))


def test_it_removes_a_member(login, olivia, alice, acme):
    membership = Membership.objects.get(user=alice)
    login(olivia).post(f"/settings/members/{membership.pk}/remove/")
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(verb="member.removed", target_label="alice@acme.test").exists()
    # alice can still sign in, but belongs to no account now
    assert login(alice).get("/")["Location"] == "/no-account/"


def test_a_member_can_leave(login, alice):
    membership = Membership.objects.get(user=alice)
    login(alice).post(f"/settings/members/{membership.pk}/remove/")
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_the_member_list_searches_filters_and_pages_without_counting_everything(
    login, olivia, acme, django_assert_max_num_queries
):
    for i in range(60):
        MembershipFactory(account=acme, user=UserFactory(email=f"m{i:02d}@acme.test", full_name=f"Member {i:02d}"),
                          role=Role.ANALYST if i % 2 else Role.MARKETER)
    client = login(olivia)
    with django_assert_max_num_queries(12):
        page1 = client.get("/settings/members/")
    assert page1.status_code == 200
    assert page1.content.count(b"data-member=") == 25
    assert b"61 results" in page1.content
    next_url = re.search(rb'rel="next" href="([^"]+)"', page1.content).group(1).decode().replace("&amp;", "&")
    page2 = client.get(next_url)
    emails1 = set(re.findall(rb'data-member="([^"]+)"', page1.content))
    emails2 = set(re.findall(rb'data-member="([^"]+)"', page2.content))
    assert len(emails2) == 25 and not emails1 & emails2
    found = client.get("/settings/members/?q=member+07")
    assert re.findall(rb'data-member="([^"]+)"', found.content) == [b"m07@acme.test"]
    analysts = client.get("/settings/members/?role=analyst")
    assert b"30 results" in analysts.content
    partial = client.get("/settings/members/?q=m1", headers={"HX-Request": "true", "HX-Target": "members"})
    assert partial.content.lstrip().startswith(b'<div id="members"')
    assert b"<html" not in partial.content


def test_invitation_create_replaces_an_earlier_pending_one(olivia, acme, django_capture_on_commit_callbacks):
    first = invitation_create(account=acme, email="x@acme.test", role=Role.ANALYST, actor=Actor(user=olivia))
    second = invitation_create(account=acme, email="X@acme.test", role=Role.ADMIN, actor=Actor(user=olivia))
    first.refresh_from_db()
    assert first.state == "revoked" and second.state == "pending"
