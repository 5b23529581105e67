"""API: sending domains (issue 7, item 7).

`{domain_id}` is resolved through the token's account while the path is validated: another
account's domain is a 404. Any token reads; adding a domain and verifying it (which stores the
result) need the channels permission (admin and owner tokens).

A domain that is not a domain name is a 422 whose detail has `loc: ["domain"]`; one already added
is a 409 `conflict`. Verifying never fails for DNS trouble: a lookup that cannot be done is the
record's status `unknown` with "could not check: ..." in its message.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Status

from accounts.access import Actor
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import id_ref
from delivery import selectors, services
from delivery.api.schemas import SendingDomainIn, SendingDomainOut, VerifyOut
from delivery.dns import UNKNOWN, DomainCheck
from delivery.models import SendingDomain
from delivery.views.records import domain_records

router = Router()

TAGS = ["sending domains"]


DomainRef = id_ref(SendingDomain, what="sending domain", example=3, queryset=selectors.sending_domain_list)


def _record_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "purpose": row["purpose_code"], "type": row["type"], "name": row["name"], "value": row["value"],
        "required": row["required"], "selector": row["selector"], "retired": row["retired"],
        "status": row["status"] or "not_checked", "message": row["message"], "found": row["found_list"],
    }


def _domain_out(domain: SendingDomain) -> dict[str, Any]:
    keys = sorted(domain.dkim_keys.all(), key=lambda k: (k.status != "active", -k.created_at.timestamp()))
    return {
        "id": domain.pk, "domain": domain.domain, "unicode_domain": domain.unicode_domain, "status": domain.status,
        "return_path_domain": domain.return_path_domain, "checked_at": domain.checked_at,
        "verified_at": domain.verified_at, "created_at": domain.created_at,
        "dkim_keys": [{"selector": k.selector, "status": k.status, "algorithm": k.algorithm, "key_size": k.key_size,
                       "record_name": k.record_name, "created_at": k.created_at, "retired_at": k.retired_at}
                      for k in keys],
        "records": [_record_out(r) for r in domain_records(domain)],
    }


def _refused(exc: ValidationError, what: str) -> ApiError:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
    details = [{"loc": [k] if k and k != "__all__" else [], "message": m, "type": "invalid_value"}
               for k, messages in errors.items() for m in messages]
    summary = "; ".join(d["message"] for d in details)
    if any("already added" in d["message"] for d in details):
        return ApiError(409, f"{what}: {summary}", code="conflict", details=details)
    return ApiError(422, f"{what}: {summary}", details=details)


@router.get("/sending-domains", tags=TAGS, response={200: CursorPage[SendingDomainOut], **ERRORS},
            summary="List the account's sending domains, newest first")
def sending_domain_list_api(request: HttpRequest, cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    page = paginate(selectors.sending_domain_list(request.auth.account), cursor=cursor, limit=limit)
    page["items"] = [_domain_out(d) for d in page["items"]]
    return page


@router.post("/sending-domains", tags=TAGS, response={201: SendingDomainOut, **ERRORS},
             summary="Add a sending domain (with a DKIM key)")
def sending_domain_create_api(request: HttpRequest, payload: SendingDomainIn) -> Status:
    """Adds the domain (status pending) with a new RSA-2048 DKIM key, and answers the DNS records to
    publish: the DKIM TXT record, SPF and DMARC suggestions. Then publish them and call
    `/sending-domains/{id}/verify`. 422 with `loc: ["domain"]` for a name that is not a domain;
    409 `conflict` for a domain already added."""
    require(request, Perm.CHANNELS_MANAGE)
    try:
        domain = services.sending_domain_create(account=request.auth.account, domain=payload.domain,
                                                actor=Actor.from_request(request))
    except ValidationError as exc:
        raise _refused(exc, "The domain was not added") from exc
    return Status(201, _domain_out(selectors.sending_domain_get(request.auth.account, domain.pk)))


@router.get("/sending-domains/{int:domain_id}", tags=TAGS, response={200: SendingDomainOut, **ERRORS},
            summary="A sending domain with its DNS records")
def sending_domain_get_api(request: HttpRequest, domain_id: DomainRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _domain_out(domain_id)


@router.post("/sending-domains/{int:domain_id}/verify", tags=TAGS, response={200: VerifyOut, **ERRORS},
             summary="Check the domain's DNS records now")
def sending_domain_verify_api(request: HttpRequest, domain_id: DomainRef) -> dict:
    """Looks every record up (a few seconds at most) and answers the result per record; the
    domain becomes verified when its active DKIM record matches. Offline or with a DNS timeout
    the record is `unknown` with "could not check: ..." - never an error answer."""
    require(request, Perm.CHANNELS_MANAGE)
    domain = domain_id
    check: DomainCheck = services.sending_domain_verify(domain=domain, actor=Actor.from_request(request))
    records = [{"purpose": r.purpose, "type": r.type, "name": r.name, "value": r.expected,
                "required": r.purpose == "dkim" and not r.retired, "selector": r.selector, "retired": r.retired,
                "status": r.status, "message": r.message, "found": list(r.found)} for r in check.records]
    return {"id": domain.pk, "domain": domain.domain, "status": domain.status, "verified": domain.is_verified,
            "checked_at": domain.checked_at, "could_not_check": any(r.status == UNKNOWN for r in check.records),
            "records": records}
