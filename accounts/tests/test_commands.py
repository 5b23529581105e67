from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import Account, ApiToken, Membership, User


def _run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_demo_is_idempotent_and_prints_working_credentials(db):
    out, _ = _run("create_demo", "--password", "demo password 123")
    assert "demo@example.com" in out and "demo password 123" in out
    _run("create_demo", "--password", "demo password 123")
    _run("create_demo")
    assert Account.objects.filter(slug="demo").count() == 1
    assert User.objects.filter(email="demo@example.com").count() == 1
    demo = Account.objects.get(slug="demo")
    assert Membership.objects.filter(account=demo).count() == 4
    client = Client()
    assert client.login(username="demo@example.com", password="demo password 123")
    assert b"Demo Shop" in client.get("/").content


def test_create_demo_shows_a_generated_password_once(db):
    out, _ = _run("create_demo")
    password = out.split("Password:")[1].split()[0]
    assert Client().login(username="demo@example.com", password=password)
    again, _ = _run("create_demo")
    assert "unchanged" in again


def test_create_api_token_prints_the_token_alone_on_the_last_line(acme, client):
    out, err = _run("create_api_token", "--account", "acme", "--role", "analyst", "--name", "ops")
    token = out.strip().splitlines()[-1]
    assert token.startswith("cdp_") and " " not in token
    assert "not shown again" in err
    assert ApiToken.objects.get().name == "ops"
    response = client.get("/api/v1/account", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.json()["token"]["role"] == "analyst"


def test_create_api_token_names_the_unknown_account(acme):
    with pytest.raises(CommandError, match=r"No account with slug 'nope'.*acme"):
        _run("create_api_token", "--account", "nope", "--role", "admin")


def test_create_api_token_may_allow_creating_profiles(acme):
    _run("create_api_token", "--account", "acme", "--role", "marketer", "--name", "site events", "--create-profiles")
    _run("create_api_token", "--account", "acme", "--role", "marketer", "--name", "plain")
    assert dict(ApiToken.objects.values_list("name", "create_profiles")) == {"site events": True, "plain": False}
