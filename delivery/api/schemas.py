"""Schemas of the sending-domains API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import ConfigDict, StringConstraints

DomainStatus = Literal["pending", "verified", "failing"]
RecordStatus = Literal["ok", "missing", "wrong", "unknown", "not_checked"]
DomainText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class SendingDomainIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"domain": "shop.example"}]})

    domain: DomainText = F(description="The domain of your From addresses. Internationalised names are accepted "
                                       "and stored in their ASCII (IDNA) form.")


class DnsRecordOut(Schema):
    purpose: Literal["dkim", "spf", "dmarc", "return_path"] = F(
        description="dkim: required for verification (the active key) or kept for mail in flight (a retired key); "
                    "spf, dmarc: suggestions; return_path: the bounce MX when this installation receives bounces.")
    type: str = F(examples=["TXT"])
    name: str = F(description="The full host name to publish at.", examples=["cdp202611._domainkey.shop.example"])
    value: str = F(description="The value to publish.")
    required: bool = F(description="Needed for the domain to be verified.")
    selector: str = F("", description="DKIM records: the key's selector.")
    retired: bool = F(False, description="DKIM records: a retired key, published until it is removed.")
    status: RecordStatus = F(description="The last check's result: ok, missing, wrong (found, but not what is "
                                         "expected), unknown (DNS could not be asked: see message), not_checked.")
    message: str = ""
    found: list[str] = F(default_factory=list, description="What DNS had at the last check.")


class DkimKeyOut(Schema):
    selector: str
    status: Literal["active", "retired"]
    algorithm: str
    key_size: int
    record_name: str
    created_at: datetime
    retired_at: datetime | None = None


class SendingDomainOut(Schema):
    id: int
    domain: str = F(description="ASCII (IDNA) form.", examples=["shop.example"])
    unicode_domain: str = F(description="As people write it.")
    status: DomainStatus = F(description="pending: never verified; verified: the active DKIM record matched at "
                                         "the last check; failing: it was verified, the last check no longer matched.")
    return_path_domain: str
    checked_at: datetime | None = None
    verified_at: datetime | None = None
    created_at: datetime
    dkim_keys: list[DkimKeyOut]
    records: list[DnsRecordOut]


class VerifyOut(Schema):
    id: int
    domain: str
    status: DomainStatus
    verified: bool
    checked_at: datetime | None = None
    could_not_check: bool = F(description="Some record could not be looked up (no DNS, a timeout): its status is "
                                          "unknown with the reason in message. The domain's status is unchanged "
                                          "by a DKIM lookup that could not be done.")
    records: list[DnsRecordOut]
