"""delivery.dns: expected records and the offline-safe check, with a fake resolver (never the internet)."""

from __future__ import annotations

import dns.exception
import dns.resolver
import pytest

from accounts.access import Actor
from delivery import dns as ddns
from delivery.dns import NoRecord, check_domain
from delivery.services import dkim_key_rotate, sending_domain_create


class FakeDns:
    """resolve(name, rdtype) over a dict {(name, type): [values]}; counts the lookups."""

    def __init__(self, records=None, error: Exception | None = None):
        self.records = records or {}
        self.error = error
        self.lookups: list[tuple[str, str]] = []

    def __call__(self, name: str, rdtype: str) -> list[str]:
        self.lookups.append((name, rdtype))
        if self.error is not None:
            raise self.error
        if (name, rdtype) not in self.records:
            raise NoRecord(name)
        return self.records[(name, rdtype)]


@pytest.fixture
def domain(acme):
    return sending_domain_create(account=acme, domain="shop.example", actor=Actor.system())


def by_purpose(check, purpose):
    return [r for r in check.records if r.purpose == purpose]


def published(domain, extra=None):
    key = domain.active_key()
    return {(key.record_name, "TXT"): [key.txt_value], **(extra or {})}


def test_it_lists_dkim_spf_and_dmarc_records_to_publish(domain, settings):
    settings.DELIVERY_SPF_INCLUDE = "spf.cdp.example"
    records = ddns.expected_records(domain)
    key = domain.active_key()

    assert [(r.purpose, r.name, r.type) for r in records] == [
        ("dkim", f"{key.selector}._domainkey.shop.example", "TXT"),
        ("spf", "bounces.shop.example", "TXT"),
        ("dmarc", "_dmarc.shop.example", "TXT"),
    ]
    assert records[0].expected == f"v=DKIM1; k=rsa; p={key.public_key}"
    assert records[1].expected == "v=spf1 include:spf.cdp.example ~all"
    assert records[2].expected == "v=DMARC1; p=none; rua=mailto:dmarc-reports@shop.example"


def test_a_bounce_mx_is_asked_for_when_configured(domain, settings):
    settings.DELIVERY_BOUNCE_MX = "bounce.cdp.example"
    resolve = FakeDns(published(domain, {("bounces.shop.example", "MX"): ["10 bounce.cdp.example."]}))

    mx = by_purpose(check_domain(domain, resolve=resolve), "return_path")

    assert [(m.type, m.expected, m.status) for m in mx] == [("MX", "10 bounce.cdp.example.", "ok")]


def test_a_matching_dkim_record_is_ok_even_split_into_strings_or_with_spaces(domain):
    key = domain.active_key()
    spaced = "v=DKIM1; k=rsa; p=" + " ".join(key.public_key[i:i + 100] for i in range(0, len(key.public_key), 100))
    check = check_domain(domain, resolve=FakeDns({(key.record_name, "TXT"): [spaced]}))

    assert by_purpose(check, "dkim")[0].status == "ok"
    assert check.dkim_ok


def test_a_missing_or_different_dkim_record_is_reported(domain):
    key = domain.active_key()
    missing = check_domain(domain, resolve=FakeDns({}))
    wrong = check_domain(domain, resolve=FakeDns({(key.record_name, "TXT"): ["v=DKIM1; k=rsa; p=AAAA"]}))

    assert by_purpose(missing, "dkim")[0].status == "missing"
    assert by_purpose(wrong, "dkim")[0].status == "wrong"
    assert "different" in by_purpose(wrong, "dkim")[0].message
    assert not missing.dkim_ok and not wrong.dkim_ok


def test_spf_is_checked_for_our_include(domain, settings):
    settings.DELIVERY_SPF_INCLUDE = "spf.cdp.example"
    name = "bounces.shop.example"

    def spf(*values):
        return by_purpose(check_domain(domain, resolve=FakeDns({(name, "TXT"): list(values)})), "spf")[0]

    assert spf("v=spf1 include:spf.cdp.example ~all").status == "ok"
    assert spf("v=spf1 include:_spf.google.com ~all").status == "wrong"
    assert spf("v=spf1 a ~all", "v=spf1 include:spf.cdp.example ~all").status == "wrong"
    assert spf("google-site-verification=abc").status == "missing"


def test_any_dmarc_record_is_ok(domain):
    check = check_domain(domain, resolve=FakeDns(published(domain, {
        ("_dmarc.shop.example", "TXT"): ["v=DMARC1; p=reject"]})))

    assert by_purpose(check, "dmarc")[0].status == "ok"


@pytest.mark.parametrize("error", [
    dns.exception.Timeout(), dns.resolver.NoNameservers(), OSError("Network is unreachable"),
])
def test_offline_gives_could_not_check_instead_of_failing(domain, error):
    check = check_domain(domain, resolve=FakeDns(error=error))

    assert {r.status for r in check.records} == {"unknown"}
    assert all(r.message.startswith("could not check: ") for r in check.records)
    assert check.offline and not check.dkim_ok


def test_retired_keys_stay_listed_but_only_the_active_one_decides(domain):
    old = domain.active_key()
    new = dkim_key_rotate(domain=domain, actor=Actor.system())
    check = check_domain(domain, resolve=FakeDns({(new.record_name, "TXT"): [new.txt_value]}))

    dkim_records = {r.selector: r for r in by_purpose(check, "dkim")}
    assert set(dkim_records) == {old.selector, new.selector}
    assert dkim_records[old.selector].retired and dkim_records[old.selector].status == "missing"
    assert check.dkim_ok
    assert [r.selector for r in by_purpose(check, "dkim")] == [new.selector, old.selector], "the active key comes first"


def test_the_system_resolver_uses_short_timeouts(monkeypatch):
    seen = {}

    def fake_resolve(self, name, rdtype):
        seen.update(lifetime=self.lifetime, name=name, rdtype=rdtype)
        raise dns.resolver.NXDOMAIN()

    monkeypatch.setattr(dns.resolver.Resolver, "resolve", fake_resolve)
    with pytest.raises(NoRecord):
        ddns.system_resolve("_dmarc.shop.example", "TXT")
    assert seen == {"lifetime": 3.0, "name": "_dmarc.shop.example", "rdtype": "TXT"}


def test_a_resolver_can_be_named_in_settings(domain, settings):
    settings.DELIVERY_DNS_RESOLVER = "delivery.tests.test_dns.everything_missing"

    assert {r.status for r in check_domain(domain).records} == {"missing"}


def everything_missing(name: str, rdtype: str) -> list[str]:
    raise NoRecord(name)
