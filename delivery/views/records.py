"""The DNS records table of a domain's page and of the API: what to publish, with the result of
the last check when there is one (delivery.selectors.dns_records), labelled for people.

A record the last check did not cover (a key generated since) is "not checked" (status ""),
which is different from "could not check" (status "unknown": DNS could not be asked).
"""

from __future__ import annotations

from typing import Any

from delivery.dns import UNKNOWN
from delivery.models import SendingDomain
from delivery.selectors import dns_records

PURPOSES = {"dkim": "DKIM", "spf": "SPF", "dmarc": "DMARC", "return_path": "Return path (bounces)"}
STATUS_LABELS = {"ok": "Found", "missing": "Missing", "wrong": "Wrong value", "unknown": "Could not check",
                 "": "Not checked"}


def _note(purpose: str, retired: bool, domain: SendingDomain, name: str) -> str:
    if purpose == "dkim":
        return ("A retired key: keep it published until you remove the key, so mail signed with it still verifies."
                if retired else "Required: the domain is verified once this record is found.")
    if purpose == "spf":
        where = "the bounce (Return-Path) domain" if name != domain.domain else "the domain"
        return (f"Suggested, at {where}. If {name} already has an SPF record, add our include to it instead of "
                "publishing a second one.")
    if purpose == "dmarc":
        return "Suggested: p=none only reports. Tighten it to quarantine or reject once the reports look right."
    return "Bounces come back through this MX record."


def domain_records(domain: SendingDomain) -> list[dict[str, Any]]:
    """[{id, purpose, purpose_code, selector, retired, type, name, value, required, note, status,
    status_label, message, found (one line), found_list}]: the records to publish, with the last check's result per record.

    status is "" when the record was not checked yet (a new domain, a key generated since)."""
    rows = []
    # Active DKIM key first, then retired keys, then the suggestions (a stable sort keeps the rest).
    records = sorted(dns_records(domain), key=lambda r: (r.purpose != "dkim", r.retired))
    for n, record in enumerate(records):
        status = record.status
        if not domain.checked_at or (status == UNKNOWN and not record.message):
            status = ""  # never looked up (unknown with a message is "could not check")
        found = record.found if status else []
        rows.append({
            "id": f"{record.purpose}-{n}",
            "purpose": PURPOSES.get(record.purpose, record.purpose)
                       + (f" ({record.selector}{', retired' if record.retired else ''})" if record.selector else ""),
            "purpose_code": record.purpose,
            "selector": record.selector,
            "retired": record.retired,
            "type": record.type,
            "name": record.name,
            "value": record.expected,
            "required": record.purpose == "dkim" and not record.retired,
            "note": _note(record.purpose, record.retired, domain, record.name),
            "status": status,
            "status_label": STATUS_LABELS.get(status, status),
            "message": record.message if status else "",
            # What DNS had, when it tells something: not for a record that is exactly the expected one.
            "found": "; ".join(str(f) for f in found)[:600] if status and list(found) != [record.expected] else "",
            "found_list": [str(f) for f in found],
        })
    return rows
