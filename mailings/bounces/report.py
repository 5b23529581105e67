"""InboundReport: what one message that arrived at the bounce domain says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailings.bounces.classify import Kind

KINDS: tuple[str, ...] = (
    "hard_bounce", "soft_bounce", "complaint", "auto_reply", "unsubscribe", "delayed", "unknown",
)

# Where `InboundReport.ref` came from. "verp" and "unsubscribe" are MAC-checked; "message_id" is not
# (anyone can write a Message-ID): the caller should check the report's recipient against the
# ledger row before acting on such a ref.
REF_SOURCES: tuple[str, ...] = ("verp", "unsubscribe", "message_id", "")


@dataclass(frozen=True, slots=True)
class InboundReport:
    """One classified inbound message.

    kind: "hard_bounce" (suppress the address), "soft_bounce" (count towards a suspension),
        "complaint" (ARF abuse report: unsubscribe and suppress), "auto_reply" (ignore),
        "unsubscribe" (mail to a u+ address), "delayed" (a DSN with Action: delayed: not a bounce,
        ignore) or "unknown" (anything else, including malformed messages; `reason` says why).
    ref: the ledger ref; None when none was found or when its MAC did not check.
    ref_source: "verp" | "unsubscribe" | "message_id" | "" (see REF_SOURCES).
    recipient: the address the report is about (DSN Original-Recipient, else Final-Recipient;
        ARF Original-Rcpt-To; heuristics) - "" when unknown.
    status: RFC 3463 code ("5.1.1"), "" when none.
    diagnostic: the remote server's text, one line, trimmed; for a complaint, the Feedback-Type.
    reporting_mta / remote_mta: host names without the "dns;" type.
    arrival_date: when the original message reached the reporting MTA (DSN/ARF Arrival-Date), else
        the inbound message's Date; aware, None when absent or unreadable.
    reason: a short human explanation ("mailbox does not exist", "message rejected as spam"...).
    message_id: the inbound message's own Message-ID ("" when none).
    fingerprint: SHA-256 (hex, 32 chars) of the raw bytes: the same message read twice has the
        same fingerprint, so the caller can make processing idempotent.
    source_id: the mailbox key it was read from (set by process_mailbox), else "".
    """

    kind: Kind
    ref: str | None = None
    recipient: str = ""
    status: str = ""
    diagnostic: str = ""
    reporting_mta: str = ""
    remote_mta: str = ""
    arrival_date: datetime | None = None
    reason: str = ""
    ref_source: str = ""
    message_id: str = ""
    fingerprint: str = ""
    source_id: str = ""

    @property
    def is_bounce(self) -> bool:
        """True for hard and soft bounces."""
        return self.kind in ("hard_bounce", "soft_bounce")
