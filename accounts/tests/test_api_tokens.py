"""The API tokens page: creating a token, with or without the right to create profiles from events."""

from __future__ import annotations

import re

from accounts.models import ApiToken, AuditEvent


def _row(html: str, name: str) -> str:
    match = re.search(r"<tr>(?:(?!</tr>).)*?" + re.escape(name) + r".*?</tr>", html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def test_it_offers_the_create_profiles_switch_off_by_default(login, olivia, acme):
    html = login(olivia, acme).get("/settings/api-tokens/").content.decode()
    box = re.search(r'<input[^>]*name="create_profiles"[^>]*>', html)
    assert box and 'type="checkbox"' in box.group(0) and "checked" not in box.group(0)
    assert "May create profiles from events" in html


def test_a_token_may_create_profiles_when_the_box_is_ticked(login, olivia, acme):
    client = login(olivia, acme)
    response = client.post("/settings/api-tokens/", {"name": "Signup form", "role": "marketer", "create_profiles": "on"})
    assert response.status_code == 200 and b"new-token" in response.content
    client.post("/settings/api-tokens/", {"name": "Order sync", "role": "marketer"})
    signup, orders = ApiToken.objects.get(name="Signup form"), ApiToken.objects.get(name="Order sync")
    assert signup.create_profiles is True and orders.create_profiles is False
    audit = AuditEvent.objects.get(verb="api_token.created", target_id=str(signup.pk))
    assert audit.data["create_profiles"] is True

    html = client.get("/settings/api-tokens/").content.decode()
    assert "Creates profiles" in _row(html, "Signup form")
    assert "Creates profiles" not in _row(html, "Order sync")
