"""Classification of delivery failures by RFC 3463 enhanced status codes and the remote text.

Rules (the reasons are in `classify`'s docstring and the tables below):

- 2.x.x: not a failure ("unknown").
- 4.x.x: soft bounce, whatever the text says.
- 5.x.x: hard bounce, except the codes that are permanent on the wire but not a property of the
  address (soft in practice): 5.1.7/5.1.8 (our sender address), 5.2.2 mailbox full, 5.2.3/5.3.4
  message too large, 5.2.4 list expansion, 5.3.x receiving system trouble, 5.4.x network and
  routing (but 5.4.4 "unable to route", which Postfix reports for a domain that does not exist),
  5.5.x protocol, 5.6.x content, and 5.7.x security/policy (spam and reputation blocks say
  something about the sender, not about the mailbox; suppressing the address for them would
  lose a reader), but 5.7.13 account disabled and 5.7.17/5.7.18 mailbox/domain owner changed.
- A soft 5.x.x code is made hard when the text plainly says the mailbox or domain does not exist
  or is disabled ("5.7.1 ... user unknown" is common). An unspecific 5.x.0 code (5.0.0, 5.2.0...)
  is decided by the text; with no telling text it is hard when the report is a standard DSN
  (RFC 3464 says the failure is permanent) and "unknown" when it came from heuristics.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["hard_bounce", "soft_bounce", "complaint", "auto_reply", "unsubscribe", "delayed", "unknown"]

HARD = "hard_bounce"
SOFT = "soft_bounce"
UNKNOWN = "unknown"

# An RFC 3463 code: class.subject.detail, each subject/detail 1-3 digits.
STATUS_RE = re.compile(r"(?<![\w.])#?([245])\.(\d{1,3})\.(\d{1,3})(?![\w.])")
# A reply code followed by an enhanced code ("550 5.1.1", "550-5.1.1", "#550 5.1.1").
REPLY_STATUS_RE = re.compile(r"(?<![\w.])([245]\d\d)[ -]+#?([245]\.\d{1,3}\.\d{1,3})(?![\w.])")
# A bare SMTP reply code at the start of a reply ("550 No such user").
REPLY_RE = re.compile(r"(?<![\w.#])([45][0-5]\d)(?:[ -]|$)")

_HARD_CODES = frozenset({"5.4.4", "5.7.13", "5.7.17", "5.7.18"})
_SOFT_CODES = frozenset({"5.1.7", "5.1.8", "5.2.2", "5.2.3", "5.2.4"})
_SOFT_SUBJECTS = frozenset({"3", "4", "5", "6", "7"})

# (hint, pattern) in priority order: the first that matches the diagnostic text wins.
_HINTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("disabled", r"\b(?:account|mailbox|user|address)\b[^.;\n]{0,40}?\b(?:is |has been |was )?"
         r"(?:disabled|deactivated|suspended|inactive|closed|terminated)\b|account that you tried to reach is disabled"),
        ("no_mailbox", r"user unknown|unknown user|no such (?:user|mailbox|recipient|account|person)|"
         r"user (?:not found|doesn'?t exist|does not exist)|"
         r"(?:mailbox|recipient|account|address|user)\s+(?:does not exist|doesn'?t exist|not found|unknown)|"
         r"recip(?:ient)?notfound|recipient not found|invalid (?:recipient|mailbox)|"
         r"unknown (?:recipient|mailbox|local[- ]part|address)|no mailbox here|addressee unknown|"
         r"not a valid (?:mailbox|recipient)|email account that you tried to reach does not exist|"
         r"wasn'?t found at|unknown or illegal alias|mailbox unavailable or not local|no such address"),
        ("no_domain", r"(?:host|domain)(?: or domain name)? not found|domain (?:does not exist|not found)|"
         r"\bnxdomain\b|unrouteable (?:address|domain)|no mx (?:record|for)|null mx|"
         r"couldn'?t find any host named|domain has no mail"),
        ("full", r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|exceed)|exceeded (?:storage|(?:the |their )?quota)|"
         r"insufficient (?:system )?storage|out of (?:storage|space)|mailbox size limit|user is over|"
         r"mailbox (?:has )?exceeded|storage (?:space|allocation) exceeded|full mailbox"),
        ("spam", r"\bspam\b|\bjunk\b|black ?list|block ?list|\bspamhaus\b|\brbl\b|\bdnsbl\b|reputation|"
         r"\bUCE\b|listed (?:at|on|in)|bulk mail|content (?:rejected|filter)|suspicious|phishing"),
        ("too_big", r"message (?:size|is too (?:big|large)|too (?:big|large))|exceeds (?:the )?(?:maximum|size)|"
         r"size limit"),
        ("policy", r"\bpolicy\b|\bblocked\b|not authori[sz]ed|\bdmarc\b|\bspf\b|\bdkim\b|authentication|"
         r"access denied|relay(?:ing)? (?:access )?denied|not permitted|\brejected\b"),
        ("timeout", r"time(?:d)? ?out|(?:retry|delivery) time (?:exceeded|expired)|too long in (?:the )?queue|"
         r"could not be delivered within|retry timeout exceeded|expired"),
    )
)

HINT_REASONS = {
    "disabled": "mailbox disabled",
    "no_mailbox": "mailbox does not exist",
    "no_domain": "recipient domain does not exist",
    "full": "mailbox full",
    "spam": "message rejected as spam",
    "too_big": "message too large",
    "policy": "message rejected by policy",
    "timeout": "delivery time expired",
}
HARD_HINTS = frozenset({"disabled", "no_mailbox", "no_domain"})

CODE_REASONS = {
    "1.0": "bad recipient address",
    "1.1": "mailbox does not exist",
    "1.2": "recipient domain does not exist",
    "1.3": "bad recipient address syntax",
    "1.4": "ambiguous recipient address",
    "1.6": "mailbox has moved",
    "1.7": "our sender address was refused",
    "1.8": "our sender domain was refused",
    "1.10": "recipient domain accepts no mail (null MX)",
    "2.0": "mailbox problem",
    "2.1": "mailbox disabled",
    "2.2": "mailbox full",
    "2.3": "message too large for the mailbox",
    "2.4": "mailing list expansion problem",
    "3.4": "message too large",
    "4.4": "unable to route to the recipient domain",
    "4.6": "mail loop",
    "4.7": "delivery time expired",
    "7.1": "message rejected by policy",
    "7.13": "mailbox disabled",
    "7.17": "mailbox owner has changed",
    "7.18": "domain owner has changed",
    "7.23": "message failed SPF",
    "7.25": "reverse DNS of our server failed",
    "7.26": "message failed sender authentication",
}
SUBJECT_REASONS = {
    "0": "delivery failed",
    "1": "recipient address problem",
    "2": "mailbox problem",
    "3": "receiving mail system problem",
    "4": "network or routing problem",
    "5": "mail protocol problem",
    "6": "message content problem",
    "7": "rejected by security or policy",
}


def hint(text: str) -> str | None:
    """The first text hint ("no_mailbox", "full", "spam"...) found in a diagnostic, or None."""
    for name, pattern in _HINTS:
        if pattern.search(text):
            return name
    return None


def hint_line(text: str) -> str:
    """The first line of a text in which a hint is found (stripped), or ""."""
    for _, pattern in _HINTS:
        match = pattern.search(text)
        if match:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            return text[start : end if end >= 0 else len(text)].strip()
    return ""


def status_in(text: str) -> str:
    """The enhanced status code a server's text carries ("550-5.1.1 ..." -> "5.1.1"), or ""."""
    match = REPLY_STATUS_RE.search(text)
    if match:
        return match.group(2)
    match = STATUS_RE.search(text)
    return ".".join(match.groups()) if match else ""


def reply_code_in(text: str) -> str:
    """The first basic SMTP reply code in a text ("550 No such user" -> "550"), or ""."""
    match = REPLY_RE.search(text)
    return match.group(1) if match else ""


def normalize_status(value: str) -> str:
    """An RFC 3463 code from a Status field ("5.1.1 (user unknown)" -> "5.1.1"), or ""."""
    match = STATUS_RE.search(value or "")
    return ".".join(match.groups()) if match else ""


def _reason(status: str, found: str | None) -> str:
    if found is not None:
        return HINT_REASONS[found]
    _, subject, detail = status.split(".")
    return CODE_REASONS.get(f"{subject}.{detail}") or SUBJECT_REASONS.get(subject, "delivery failed")


def classify(status: str, diagnostic: str, *, trusted: bool) -> tuple[str, str, str]:
    """(kind, status, reason) for one failed delivery.

    status: the RFC 3463 code from the report ("" when it had none); diagnostic: the remote text.
    trusted: True for a standard RFC 3464 report whose Action is "failed" (its 5.x.x is believed),
        False for a heuristic one, where an unclear failure stays "unknown" rather than hard.
    The returned status is the most specific code known: an unspecific "5.0.0" in the Status field
    is replaced by the code in the diagnostic ("550 5.1.1 ...") when that has the same class; with
    no code at all, one is derived from the SMTP reply code and the text (552 -> 5.2.2...).
    kind is one of "hard_bounce", "soft_bounce", "unknown"; reason is a short explanation.
    """
    found = hint(diagnostic)
    in_text = status_in(diagnostic)
    if not status or (status.endswith(".0.0") and in_text[:1] == status[:1]):
        status = in_text or status
    if not status:
        reply = reply_code_in(diagnostic)
        if reply.startswith("4"):
            status = "4.0.0"
        elif reply == "552" and found in (None, "full"):
            status, found = "5.2.2", "full"
        elif reply.startswith("5"):
            status = "5.0.0"
        elif found is None:
            return UNKNOWN, "", "no status code found"
        elif found in HARD_HINTS:
            status = "5.0.0"
        else:
            status = "4.0.0"
    klass, subject, detail = status.split(".")
    if klass == "2":
        return UNKNOWN, status, "delivered, not a failure"
    if klass == "4":
        return SOFT, status, _reason(status, found if found in HINT_REASONS and detail == "0" else None)
    # Class 5.
    if status in _HARD_CODES:
        return HARD, status, _reason(status, None)
    if status in _SOFT_CODES or subject in _SOFT_SUBJECTS:
        if found in HARD_HINTS:
            return HARD, status, _reason(status, found)
        return SOFT, status, _reason(status, found if (detail == "0" or subject == "7") else None)
    if detail == "0":  # 5.0.0, 5.1.0, 5.2.0: the text decides
        if found in HARD_HINTS:
            return HARD, status, _reason(status, found)
        if found is not None:
            return SOFT, status, _reason(status, found)
        if not trusted:
            return UNKNOWN, status, "permanent failure, cause unclear"
    return HARD, status, _reason(status, found if found in HARD_HINTS else None)


_SPACE = re.compile(r"\s+")
_TYPE_PREFIX = re.compile(r"^\s*(?:smtp|x-unix|x-postfix|x-local|x-exim|X-Exchange)\s*;\s*", re.IGNORECASE)
_CONTINUATION = re.compile(r"(?<=\s)[245]\d\d[ -]#?(?:[245]\.\d{1,3}\.\d{1,3}\s+)?")

MAX_DIAGNOSTIC = 500


def clean_diagnostic(value: str) -> str:
    """A Diagnostic-Code as one readable line: without its "smtp;" type, unfolded, the reply code
    and enhanced code repeated on each line of a multi-line reply kept only once
    ("550-5.1.1 The email account ... 550-5.1.1 double-checking" -> "550-5.1.1 The email account
    ... double-checking"), whitespace collapsed, at most MAX_DIAGNOSTIC characters."""
    text = _TYPE_PREFIX.sub("", value or "")
    text = _SPACE.sub(" ", text).strip()
    head = REPLY_STATUS_RE.match(text) or REPLY_RE.match(text)
    if head:
        start = head.end()
        text = text[:start] + _CONTINUATION.sub("", text[start:])
        text = _SPACE.sub(" ", text).strip()
    if len(text) > MAX_DIAGNOSTIC:
        text = text[: MAX_DIAGNOSTIC - 1].rstrip() + "…"
    return text
