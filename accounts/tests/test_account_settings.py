from __future__ import annotations

from accounts.models import Account, AuditEvent


def _post(client, **changes):
    data = {"name": "Acme", "timezone": "Europe/Berlin", "language": "en", "default_phone_region": "US", **changes}
    return client.post("/settings/account/", data)


def test_it_saves_account_settings_and_audits_what_changed(login, olivia, acme):
    response = _post(login(olivia), timezone="Asia/Tokyo", default_phone_region="de")
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.timezone == "Asia/Tokyo" and acme.default_phone_region == "DE"
    event = AuditEvent.objects.get(verb="account.updated")
    assert event.data == {
        "timezone": {"from": "Europe/Berlin", "to": "Asia/Tokyo"},
        "default_phone_region": {"from": "US", "to": "DE"},
    }


def test_nothing_changed_writes_no_audit_event(login, olivia, acme):
    assert _post(login(olivia)).status_code == 302
    assert not AuditEvent.objects.filter(verb="account.updated").exists()


def test_a_bad_region_is_an_inline_error(login, olivia, acme):
    client = login(olivia)
    response = _post(client, default_phone_region="Germany")
    assert response.status_code == 200 and b"at most 2 characters" in response.content
    response = _post(client, default_phone_region="1x")
    assert response.status_code == 200 and b"two-letter" in response.content
    assert Account.objects.get(pk=acme.pk).default_phone_region == "US"


def test_only_admins_and_owners_change_settings(login, alice, bob):
    assert login(alice).get("/settings/account/").status_code == 403
    assert _post(login(bob), name="Hacked").status_code == 403
