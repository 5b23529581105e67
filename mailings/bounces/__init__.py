"""Inbound mail at the bounce domain -> classified reports (issue 8, item 7, the ledger-free part).

A pure library: no models, no database. `parse_message(raw)` classifies one message as a hard or
soft bounce, a delay notice, a complaint, an auto-reply, a mailto unsubscribe or unknown, with the
ledger ref read from the MAC-checked VERP/unsubscribe address. `process_mailbox(path, handle)`
does it for a whole Maildir or mbox. The rules are in `mailings.bounces.parse` (which check wins)
and `mailings.bounces.classify` (RFC 3463 codes and the remote text).
"""

from __future__ import annotations

from mailings.bounces.classify import classify, clean_diagnostic
from mailings.bounces.parse import MAX_PARSE_BYTES, parse_message
from mailings.bounces.readers import ProcessResult, is_maildir, iter_maildir, iter_mbox, process_mailbox
from mailings.bounces.report import KINDS, InboundReport

__all__ = [
    "KINDS",
    "MAX_PARSE_BYTES",
    "InboundReport",
    "ProcessResult",
    "classify",
    "clean_diagnostic",
    "is_maildir",
    "iter_maildir",
    "iter_mbox",
    "parse_message",
    "process_mailbox",
]
