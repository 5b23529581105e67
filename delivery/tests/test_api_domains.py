"""API: /sending-domains (list, add with a DKIM key and its records, read, verify)."""

from __future__ import annotations

import dns.exception
import dns.resolver
import pytest

from accounts.access import Actor
from accounts.permissions import Role
from delivery.models import DkimKey, SendingDomain
from delivery.services import sending_domain_create
from delivery.tests.test_views_domains import fake_dns, publish  # noqa: F401 - the fake DNS fixture


@pytest.fixture
def shop(acme, olivia) -> SendingDomain:
    return sending_domain_create(account=acme, domain="shop.example", actor=Actor(user=olivia))


def test_post_adds_a_domain_and_answers_the_records_to_publish(caller, acme):
    response = caller(acme).post("/api/v1/sending-domains", {"domain": "Shop.Example"})
    assert response.status_code == 201, response.content
    body = response.json()
    domain = SendingDomain.objects.get(account=acme)
    key = domain.active_key()
    assert (body["id"], body["domain"], body["status"]) == (domain.pk, "shop.example", "pending")
    assert body["dkim_keys"] == [{"selector": key.selector, "status": "active", "algorithm": "rsa-sha256",
                                  "key_size": 2048, "record_name": key.record_name,
                                  "created_at": body["dkim_keys"][0]["created_at"], "retired_at": None}]
    records = {r["purpose"]: r for r in body["records"]}
    assert records["dkim"]["name"] == key.record_name and records["dkim"]["value"] == key.txt_value
    assert records["dkim"]["required"] and records["dkim"]["status"] == "not_checked"
    assert records["spf"]["value"].startswith("v=spf1") and not records["spf"]["required"]
    assert records["dmarc"]["name"] == "_dmarc.shop.example"


@pytest.mark.parametrize("value", ["localhost", "news@shop.example", "exa mple.com", "-x-.example", "1.2.3.4"])
def test_a_bad_domain_is_a_422_naming_the_field(caller, acme, value):
    response = caller(acme).post("/api/v1/sending-domains", {"domain": value})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == ["domain"]
    assert not SendingDomain.objects.exists()


def test_a_missing_domain_is_a_422_naming_the_field(caller, acme):
    response = caller(acme).post("/api/v1/sending-domains", {})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["domain"]


def test_a_domain_already_added_is_a_409(caller, acme, shop):
    response = caller(acme).post("/api/v1/sending-domains", {"domain": "shop.example"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert SendingDomain.objects.filter(account=acme).count() == 1


def test_a_marketer_token_reads_but_cannot_add_or_verify(caller, acme, shop):
    marketer = caller(acme, Role.MARKETER)
    assert marketer.get("/api/v1/sending-domains").status_code == 200
    assert marketer.post("/api/v1/sending-domains", {"domain": "other.example"}).status_code == 403
    assert marketer.post(f"/api/v1/sending-domains/{shop.pk}/verify").status_code == 403
    assert SendingDomain.objects.filter(account=acme).count() == 1
    shop.refresh_from_db()
    assert shop.checked_at is None


def test_get_lists_the_accounts_domains_newest_first(caller, acme, globex, charlie, olivia, shop):
    second = sending_domain_create(account=acme, domain="news.example", actor=Actor(user=olivia))
    sending_domain_create(account=globex, domain="globex.example", actor=Actor(user=charlie))
    page = caller(acme).get("/api/v1/sending-domains", {"limit": 1}).json()
    assert [d["domain"] for d in page["items"]] == ["news.example"] and page["next_cursor"]
    rest = caller(acme).get("/api/v1/sending-domains", {"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [d["domain"] for d in rest["items"]] == ["shop.example"] and rest["next_cursor"] is None
    assert second.pk == page["items"][0]["id"]


def test_get_one_answers_its_keys_active_first(caller, acme, olivia, shop):
    from delivery.services import dkim_key_rotate

    old = shop.active_key()
    new = dkim_key_rotate(domain=shop, actor=Actor(user=olivia))
    body = caller(acme).get(f"/api/v1/sending-domains/{shop.pk}").json()
    assert [(k["selector"], k["status"]) for k in body["dkim_keys"]] == [(new.selector, "active"),
                                                                         (old.selector, "retired")]
    dkim = [r for r in body["records"] if r["purpose"] == "dkim"]
    assert [(r["selector"], r["retired"], r["required"]) for r in dkim] == [(new.selector, False, True),
                                                                           (old.selector, True, False)]


def test_verify_answers_each_records_result(caller, acme, shop, fake_dns):  # noqa: F811
    publish(shop)
    fake_dns[("_dmarc.shop.example", "TXT")] = ["v=DMARC1; p=reject"]
    fake_dns[("bounces.shop.example", "TXT")] = ["v=spf1 -all", "v=spf1 mx ~all"]
    response = caller(acme).post(f"/api/v1/sending-domains/{shop.pk}/verify")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "verified" and body["verified"] and not body["could_not_check"]
    status = {r["purpose"]: (r["status"], r["message"]) for r in body["records"]}
    assert status["dkim"] == ("ok", "")
    assert status["dmarc"] == ("ok", "")
    assert status["spf"][0] == "wrong" and "more than one SPF record" in status["spf"][1]
    spf = next(r for r in body["records"] if r["purpose"] == "spf")
    assert spf["found"] == ["v=spf1 -all", "v=spf1 mx ~all"]
    # The stored result is what GET answers afterwards.
    again = caller(acme).get(f"/api/v1/sending-domains/{shop.pk}").json()
    assert {r["purpose"]: r["status"] for r in again["records"]} == {"dkim": "ok", "spf": "wrong", "dmarc": "ok"}


def test_verify_offline_is_could_not_check_not_an_error(caller, acme, shop, fake_dns):  # noqa: F811
    key = shop.active_key()
    for name in (key.record_name, "bounces.shop.example", "_dmarc.shop.example"):
        fake_dns[(name, "TXT")] = dns.resolver.NoNameservers()
    response = caller(acme).post(f"/api/v1/sending-domains/{shop.pk}/verify")
    assert response.status_code == 200
    body = response.json()
    assert body["could_not_check"] and body["status"] == "pending" and not body["verified"]
    assert all(r["status"] == "unknown" and r["message"].startswith("could not check") for r in body["records"])


def test_verify_with_a_timeout_on_one_record_checks_the_others(caller, acme, shop, fake_dns):  # noqa: F811
    publish(shop)
    fake_dns[("_dmarc.shop.example", "TXT")] = dns.exception.Timeout()
    body = caller(acme).post(f"/api/v1/sending-domains/{shop.pk}/verify").json()
    status = {r["purpose"]: r["status"] for r in body["records"]}
    assert status == {"dkim": "ok", "spf": "missing", "dmarc": "unknown"}
    assert body["verified"] and body["could_not_check"]


def test_another_accounts_domain_is_a_404_on_every_route(caller, globex, shop):
    them = caller(globex, Role.OWNER)
    for response in (them.get(f"/api/v1/sending-domains/{shop.pk}"), them.post(f"/api/v1/sending-domains/{shop.pk}/verify")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert caller(globex).get("/api/v1/sending-domains").json()["items"] == []
    shop.refresh_from_db()
    assert shop.checked_at is None


def test_an_unknown_or_absurd_id_is_a_404(caller, acme):
    assert caller(acme).get("/api/v1/sending-domains/999999").status_code == 404
    assert caller(acme).get(f"/api/v1/sending-domains/{2**70}").status_code == 404


def test_the_private_key_is_never_in_an_answer(caller, acme, shop):
    key = DkimKey.objects.get(domain=shop)
    private_body = "".join(key.private_key.strip().splitlines()[1:-1])[:60]
    for response in (caller(acme).get("/api/v1/sending-domains"), caller(acme).get(f"/api/v1/sending-domains/{shop.pk}")):
        assert private_body not in response.content.decode()
