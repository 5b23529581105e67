"""The DNS records a sending domain needs, and what DNS has for them (dnspython).

Records (`expected_records`):
- DKIM: TXT at <selector>._domainkey.<domain> for every key that exists (active and retired:
  a retired key stays published until it is removed, so mail in flight still verifies).
- SPF: TXT "v=spf1 include:<settings.DELIVERY_SPF_INCLUDE> ~all" at the Return-Path domain
  (receivers check SPF against the envelope sender, which is the VERP address at
  bounces.<domain> by default). With no DELIVERY_SPF_INCLUDE the suggestion is "v=spf1 mx ~all".
  An existing SPF record is "ok" when it includes ours, "wrong" when it does not.
- DMARC: TXT at _dmarc.<domain>, any "v=DMARC1" record is ok; suggestion p=none with rua to
  settings.DELIVERY_DMARC_RUA (default dmarc-reports@<domain>).
- Return path: MX at the Return-Path domain pointing to settings.DELIVERY_BOUNCE_MX, when that
  is set (bounces come back to us); otherwise no record is asked for.

It works offline: a timeout, no nameserver or any resolver failure gives the record status
"unknown" with "could not check: ..." instead of an exception (lifetime 3 s per query).
Tests inject `resolve(name, rdtype) -> list[str]` (raise NXDOMAIN/NoAnswer for "none",
anything else for "could not check"); settings.DELIVERY_DNS_RESOLVER may name such a
function (dotted path) for browser tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.resolver
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from delivery.models import SendingDomain

Resolve = Callable[[str, str], list[str]]

OK, MISSING, WRONG, UNKNOWN = "ok", "missing", "wrong", "unknown"
LIFETIME = 3.0


class NoRecord(Exception):
    """Raised by a resolve function: the name has no record of that type (or does not exist)."""


@dataclass
class RecordCheck:
    """One record: what to publish (`expected`) and what DNS has (`found`)."""

    purpose: str  # dkim | spf | dmarc | return_path
    name: str
    type: str
    expected: str
    found: list[str] = field(default_factory=list)
    status: str = UNKNOWN
    message: str = ""
    selector: str = ""
    retired: bool = False  # a retired DKIM key: still published, not needed for verification

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DomainCheck:
    domain: str
    records: list[RecordCheck]
    checked_at: str = ""

    @property
    def dkim_ok(self) -> bool:
        """The ACTIVE key's record matches (what verification requires)."""
        active = [r for r in self.records if r.purpose == "dkim" and not r.retired]
        return bool(active) and all(r.status == OK for r in active)

    @property
    def offline(self) -> bool:
        return any(r.status == UNKNOWN for r in self.records)

    def as_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "checked_at": self.checked_at, "records": [r.as_dict() for r in self.records]}


def spf_include() -> str:
    return getattr(settings, "DELIVERY_SPF_INCLUDE", "")


def spf_expected() -> str:
    include = spf_include()
    return f"v=spf1 include:{include} ~all" if include else "v=spf1 mx ~all"


def dmarc_expected(domain: str) -> str:
    rua = getattr(settings, "DELIVERY_DMARC_RUA", "") or f"dmarc-reports@{domain}"
    return f"v=DMARC1; p=none; rua=mailto:{rua}"


def expected_records(domain: SendingDomain) -> list[RecordCheck]:
    """What the domain must publish, without looking anything up (status "unknown")."""
    records: list[RecordCheck] = []
    for key in domain.dkim_keys.all().order_by("status", "-created_at"):  # active first
        records.append(
            RecordCheck(
                purpose="dkim", name=key.record_name, type="TXT", expected=key.txt_value, selector=key.selector,
                retired=key.status != key.Status.ACTIVE,
            )
        )
    bounce = domain.bounce_domain
    records.append(RecordCheck(purpose="spf", name=bounce, type="TXT", expected=spf_expected()))
    records.append(RecordCheck(purpose="dmarc", name=f"_dmarc.{domain.domain}", type="TXT",
                               expected=dmarc_expected(domain.domain)))
    bounce_mx = getattr(settings, "DELIVERY_BOUNCE_MX", "")
    if bounce_mx and bounce != domain.domain:
        records.append(RecordCheck(purpose="return_path", name=bounce, type="MX", expected=f"10 {bounce_mx.rstrip('.')}."))
    return records


def system_resolve(name: str, rdtype: str) -> list[str]:
    """dnspython lookup with short timeouts; TXT strings of one record are joined."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = LIFETIME
    resolver.timeout = LIFETIME
    try:
        answer = resolver.resolve(name, rdtype)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
        raise NoRecord(str(exc)) from exc
    if rdtype == "TXT":
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    return [r.to_text() for r in answer]


def default_resolve() -> Resolve:
    path = getattr(settings, "DELIVERY_DNS_RESOLVER", "")
    return import_string(path) if path else system_resolve


def _tags(txt: str) -> dict[str, str]:
    tags = {}
    for part in txt.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def _evaluate(record: RecordCheck, found: list[str]) -> None:
    record.found = found
    if record.purpose == "dkim":
        want = _tags(record.expected).get("p", "")
        keys = [t for t in found if "p" in _tags(t)]
        if not keys:
            record.status, record.message = MISSING, "no DKIM record"
        elif any(_tags(t)["p"] == want for t in keys):
            record.status = OK
        else:
            record.status = WRONG
            record.message = "the published key is a different one"
    elif record.purpose == "spf":
        spf = [t for t in found if t.lower().startswith("v=spf1")]
        include = spf_include()
        if not spf:
            record.status, record.message = MISSING, "no SPF record"
        elif len(spf) > 1:
            record.status, record.message = WRONG, "more than one SPF record (receivers treat that as an error)"
        elif include and f"include:{include.lower()}" not in spf[0].lower().split():
            record.status, record.message = WRONG, f"the SPF record does not include {include}"
        else:
            record.status = OK
    elif record.purpose == "dmarc":
        if any(t.lower().replace(" ", "").startswith("v=dmarc1") for t in found):
            record.status = OK
        else:
            record.status, record.message = MISSING, "no DMARC record"
    else:  # return_path MX
        want = record.expected.split()[-1].rstrip(".").lower()
        hosts = [f.split()[-1].rstrip(".").lower() for f in found]
        if not hosts:
            record.status, record.message = MISSING, "no MX record"
        elif want in hosts:
            record.status = OK
        else:
            record.status, record.message = WRONG, f"MX does not point to {want}"


def check_domain(domain: SendingDomain, *, resolve: Resolve | None = None) -> DomainCheck:
    """Look every expected record up and compare. Never raises for DNS trouble: a record that
    cannot be looked up is "unknown" with "could not check: <reason>"."""
    resolve = resolve or default_resolve()
    records = expected_records(domain)
    for record in records:
        try:
            found = resolve(record.name, record.type)
        except (NoRecord, dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            found = []
        except (dns.exception.DNSException, OSError, RuntimeError, ValueError) as exc:
            record.status = UNKNOWN
            record.message = f"could not check: {exc or type(exc).__name__}"
            continue
        _evaluate(record, found)
    return DomainCheck(domain=domain.domain, records=records, checked_at=timezone.now().isoformat())
