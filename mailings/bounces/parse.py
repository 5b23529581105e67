"""parse_message: one raw inbound message -> InboundReport.

The order of the checks, first match wins:

1. an RFC 3464 delivery-status part (message/delivery-status or message/global-delivery-status,
   inside multipart/report or not) -> the DSN of its most telling recipient (failed before
   delayed before the rest): hard/soft per `classify`, "delayed" for Action: delayed,
   "unknown" for delivered/relayed/expanded;
2. an RFC 5965 feedback report (message/feedback-report) -> "complaint" for Feedback-Type abuse,
   fraud, virus or other; "unknown" for not-spam, auth-failure and the rest;
3. mail to a u+ address (delivery.mime.unsubscribe_address) -> "unsubscribe";
4. a non-standard bounce (sender MAILER-DAEMON/postmaster, X-Failed-Recipients, or a bounce
   subject) -> heuristics over its human-readable text (plain or HTML), classified with
   trusted=False: an unclear failure is "unknown", never hard;
5. an auto-reply (RFC 3834 Auto-Submitted other than "no", X-Autoreply/X-Autorespond,
   Precedence: auto_reply, a vacation subject) -> "auto_reply";
6. anything else -> "unknown".

DSNs and auto-replies carry Auto-Submitted too (Postfix and Exim set it on bounces), so the
bounce checks come first.

Refs. A bounce's ref comes from a b+ address (verp_parse) among the envelope headers
(Delivered-To, X-Original-To, Envelope-To, X-Envelope-To, To, Cc), else from the Return-Path of
the original message quoted in it; both are MAC-checked. When an envelope b+/u+ address has a
MAC that does not check, the message is treated as forged: ref None, no fallback to quoted
headers. A complaint's ref comes from the envelope, the report's Original-Mail-From (our VERP
sender), the quoted Return-Path, and last from the quoted Message-ID (delivery.mime.message_id_ref,
ref_source "message_id": not authenticated).
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from delivery.mime import message_id_ref, unsubscribe_parse, verp_parse
from mailings.bounces.classify import (
    HARD,
    HINT_REASONS,
    REPLY_RE,
    REPLY_STATUS_RE,
    SOFT,
    STATUS_RE,
    UNKNOWN,
    classify,
    clean_diagnostic,
    hint,
    hint_line,
    normalize_status,
)
from mailings.bounces.classify import HARD_HINTS as _HARD_HINTS
from mailings.bounces.report import InboundReport

logger = logging.getLogger("mailings.bounces")

MAX_PARSE_BYTES = 4 * 1024 * 1024
"""Only this much of a message is parsed: reports come before the quoted original, and a huge
message must not cost unbounded time or memory."""

_HEADER_LINE = re.compile(rb"^(?:From |[!-9;-~]+:)")
_ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ARF_TYPE = "message/feedback-report"
_ORIGINAL_TYPES = ("message/rfc822", "message/global")
_HEADERS_TYPES = ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers")
_ACTION_RANK = {"failed": 3, "delayed": 2}
_DAEMONS = frozenset({"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mdaemon", "mail.daemon"})
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered mail|delivery status notification|mail delivery (?:failed|failure|system)|"
    r"failure notice|returned mail|delivery fail|non[- ]?delivery|could not be delivered|"
    r"delivery has failed|mail system error|delivery problem|nicht zustellbar|non remis",
    re.IGNORECASE,
)
_VACATION_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[- ]?(?:reply|response|antwort)|auto:|out of (?:the )?office|vacation|"
    r"away from (?:the |my )?office|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica|"
    r"risposta automatica|automatisch antwoord|fuera de la oficina|absence)",
    re.IGNORECASE,
)
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation")
_COPY_MARKERS = re.compile(
    r"^[ \t]*(?:-+ ?(?:below this line is a copy of the message|this is a copy of (?:the|your) message|"
    r"original message follows|original message)|original message headers:|"
    r"-+ ?the header of the original message)",
    re.IGNORECASE | re.MULTILINE,
)
_ADDR = r"[^\s<>()\"',;:\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
_RECIPIENT_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for pattern in (
        rf"^<({_ADDR})>:",  # qmail
        rf"following address(?:\(es\)|es)? failed:\s+<?({_ADDR})",  # Exim
        rf"your message to\s+<?({_ADDR})>?\s+couldn'?t be delivered",  # Exchange Online
        rf"delivery has failed to these recipients or groups:\s+(?:[^\n]*?\()?<?({_ADDR})",  # Exchange
        rf"could not be delivered to[^\n]*?<?({_ADDR})",
        rf"(?:recipient|address|to)\s*:?\s+<({_ADDR})>",
    )
)
_BLOCK_SPLIT = re.compile(r"\r?\n[ \t]*\r?\n")
_TAGS = re.compile(r"<[^>]*>")
_DROP_BLOCKS = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|/h\d|/td)\b[^>]*>", re.IGNORECASE)
_FEEDBACK_REASONS = {
    "abuse": "marked as spam by the recipient",
    "fraud": "reported as fraud or phishing",
    "virus": "reported as carrying a virus",
    "other": "complaint by the recipient",
}


@dataclass(frozen=True, slots=True)
class _Envelope:
    verp_ref: str | None = None
    unsubscribe_ref: str | None = None
    unsubscribe: bool = False  # a u+ address was among the envelope headers (valid MAC or not)
    forged: bool = False  # a b+/u+ address whose MAC did not check


def parse_message(raw: bytes) -> InboundReport | None:
    """Classify one inbound message (the bytes as delivered, headers and body).

    Returns None when the bytes are not an e-mail message at all (empty, binary, no header line at
    the start). Never raises for any bytes: an exception from the email package on hostile input
    gives kind "unknown" with reason "malformed message: ..." (and a log warning). Only the first
    MAX_PARSE_BYTES are parsed. See the module docstring for the rules.
    """
    raw = bytes(raw)
    if not _looks_like_mail(raw):
        return None
    fingerprint = hashlib.sha256(raw).hexdigest()[:32]
    try:
        msg = BytesParser(policy=compat32).parsebytes(raw[:MAX_PARSE_BYTES])
        report = _classify(msg)
        message_id = _header(msg, "message-id").strip()
    except Exception as exc:  # the email package on hostile input; the caller must go on
        logger.warning("bounces: malformed message %s: %r", fingerprint, exc)
        return InboundReport(kind=UNKNOWN, reason=f"malformed message: {type(exc).__name__}", fingerprint=fingerprint)
    return replace(report, fingerprint=fingerprint, message_id=message_id[:998])


def _looks_like_mail(raw: bytes) -> bool:
    head = raw.lstrip(b"\r\n")[:65536]
    end = head.find(b"\n\n")
    end2 = head.find(b"\r\n\r\n")
    header_block = head[: min(x for x in (end, end2, len(head)) if x >= 0)]
    return bool(header_block) and b"\0" not in header_block and bool(_HEADER_LINE.match(header_block))


def _classify(msg: Message) -> InboundReport:
    envelope = _envelope(msg)
    dsn = _find_part(msg, _DSN_TYPES)
    if dsn is not None:
        report = _from_dsn(msg, dsn, envelope)
        if report is not None:
            return report
    arf = _find_part(msg, (_ARF_TYPE,))
    if arf is not None:
        return _from_arf(msg, arf, envelope)
    subject = _subject(msg)
    if envelope.unsubscribe:
        return InboundReport(
            kind="unsubscribe",
            ref=envelope.unsubscribe_ref,
            ref_source="unsubscribe" if envelope.unsubscribe_ref else "",
            recipient=parseaddr(_header(msg, "from"))[1],
            arrival_date=_date(_header(msg, "date")),
            reason="unsubscribe request by mail" if envelope.unsubscribe_ref else "unsubscribe address with a bad MAC",
        )
    if _looks_like_bounce(msg, subject):
        return _from_text(msg, envelope)
    why = _auto_reply(msg, subject)
    if why:
        return InboundReport(
            kind="auto_reply", ref=envelope.verp_ref, ref_source="verp" if envelope.verp_ref else "",
            recipient=parseaddr(_header(msg, "from"))[1], arrival_date=_date(_header(msg, "date")), reason=why,
        )
    return InboundReport(
        kind=UNKNOWN, ref=envelope.verp_ref, ref_source="verp" if envelope.verp_ref else "",
        arrival_date=_date(_header(msg, "date")), reason="not a bounce, complaint, auto-reply or unsubscribe",
    )


# --- DSN (RFC 3464) ------------------------------------------------------------------------------


def _from_dsn(msg: Message, part: Message, envelope: _Envelope) -> InboundReport | None:
    blocks = _blocks(part)
    recipients = [b for b in blocks if "final-recipient" in b or "original-recipient" in b]
    if not recipients:
        return None  # a broken report: the heuristics over the text do better
    per_message = blocks[0] if blocks[0] is not recipients[0] else {}

    def rank(block: dict[str, str]) -> int:
        return _ACTION_RANK.get(_action(block), 1)

    block = max(recipients, key=rank)  # max keeps the first of equals
    action = _action(block)
    status = normalize_status(block.get("status", ""))
    diagnostic = clean_diagnostic(block.get("diagnostic-code", ""))
    original = _original(msg, "")
    ref, source = _bounce_ref(envelope, original)
    common = {
        "ref": ref,
        "ref_source": source,
        "recipient": _typed_address(block.get("original-recipient", ""))
        or _typed_address(block.get("final-recipient", "")),
        "diagnostic": diagnostic,
        "reporting_mta": _host(per_message.get("reporting-mta", "")),
        "remote_mta": _host(block.get("remote-mta", "")),
        "arrival_date": _date(per_message.get("arrival-date", "")) or _date(_header(msg, "date")),
    }
    if action == "failed":
        kind, status, reason = classify(status, diagnostic, trusted=True)
        return InboundReport(kind=kind, status=status, reason=reason, **common)
    _, code, reason = classify(status, diagnostic, trusted=False)
    if action == "delayed":
        return InboundReport(kind="delayed", status=code, reason=f"delivery delayed: {reason}", **common)
    return InboundReport(kind=UNKNOWN, status=status, reason=f"{action or 'no action'} notice, not a failure", **common)


def _action(block: dict[str, str]) -> str:
    words = block.get("action", "").lower().split()
    if words:
        return words[0]
    status = normalize_status(block.get("status", ""))
    return {"5": "failed", "4": "delayed", "2": "delivered"}.get(status[:1], "")


# --- ARF (RFC 5965) ------------------------------------------------------------------------------


def _from_arf(msg: Message, part: Message, envelope: _Envelope) -> InboundReport:
    fields: dict[str, str] = {}
    for block in _blocks(part):
        for name, value in block.items():
            fields.setdefault(name, value)
    feedback_type = fields.get("feedback-type", "").strip().lower()
    original = _original(msg, "")
    ref, source = _complaint_ref(envelope, fields, original)
    recipient = _typed_address(fields.get("original-rcpt-to", "")) or (
        parseaddr(_header(original, "to"))[1] if original is not None else ""
    )
    user_agent = fields.get("user-agent", "").strip()
    diagnostic = clean_diagnostic(f"{feedback_type or 'no Feedback-Type'}" + (f" ({user_agent})" if user_agent else ""))
    kind = "complaint" if feedback_type in _FEEDBACK_REASONS else UNKNOWN
    reason = _FEEDBACK_REASONS.get(feedback_type) or f"feedback report of type {feedback_type or '(none)'}, not a complaint"
    return InboundReport(
        kind=kind, ref=ref, ref_source=source, recipient=recipient, diagnostic=diagnostic,
        reporting_mta=_host(fields.get("reporting-mta", "")),
        arrival_date=_date(fields.get("arrival-date", "") or fields.get("received-date", "")) or _date(_header(msg, "date")),
        reason=reason,
    )


def _complaint_ref(envelope: _Envelope, fields: dict[str, str], original: Message | None) -> tuple[str | None, str]:
    if envelope.forged:
        return None, ""
    if envelope.verp_ref:
        return envelope.verp_ref, "verp"
    ref = verp_parse(_typed_address(fields.get("original-mail-from", "")))
    if ref:
        return ref, "verp"
    if original is not None:
        ref = verp_parse(parseaddr(_header(original, "return-path"))[1])
        if ref:
            return ref, "verp"
        ref = message_id_ref(_header(original, "message-id"))
        if ref:
            return ref, "message_id"
    return None, ""


# --- non-standard bounces ------------------------------------------------------------------------


def _looks_like_bounce(msg: Message, subject: str) -> bool:
    sender = parseaddr(_header(msg, "from"))[1].lower().partition("@")[0]
    return sender in _DAEMONS or bool(msg.get("x-failed-recipients")) or bool(_BOUNCE_SUBJECT.search(subject))


def _from_text(msg: Message, envelope: _Envelope) -> InboundReport:
    text = _human_text(msg)
    marker = _COPY_MARKERS.search(text)
    body, tail = text, ""
    if marker:  # the quoted original starts on the line after the marker line
        end = text.find("\n", marker.end())
        body, tail = text[: marker.start()], (text[end + 1 :] if end >= 0 else "")
    original = _original(msg, tail)
    ref, source = _bounce_ref(envelope, original)
    line = _diagnostic_line(body)
    if line:
        kind, status, reason = classify(_status_of(line), line, trusted=False)
    else:  # no code anywhere: only a plain statement decides ("No such user here")
        found = hint(body)
        line = hint_line(body)
        status = ""
        kind = HARD if found in _HARD_HINTS else SOFT if found else UNKNOWN
        reason = f"{HINT_REASONS[found]} (from the text)" if found else "bounce without a status code"
    recipient = _text_recipient(msg, body, line, original)
    return InboundReport(
        kind=kind, ref=ref, ref_source=source, recipient=recipient, status=status, diagnostic=clean_diagnostic(line),
        arrival_date=_date(_header(msg, "date")), reason=reason,
    )


def _status_of(line: str) -> str:
    match = REPLY_STATUS_RE.search(line)
    if match:
        return match.group(2)
    match = STATUS_RE.search(line)
    return ".".join(match.groups()) if match else ""


def _diagnostic_line(body: str) -> str:
    """The line with the first status or reply code, with the next line when it continues it."""
    lines = [line.strip() for line in body.splitlines()]
    for pattern in (REPLY_STATUS_RE, STATUS_RE, REPLY_RE):
        for index, line in enumerate(lines):
            if pattern.search(line):
                following = lines[index + 1] if index + 1 < len(lines) else ""
                if following and not pattern.search(following) and not line.endswith((".", "'", "##")):
                    return f"{line} {following}"
                return line
    return ""


def _text_recipient(msg: Message, body: str, line: str, original: Message | None) -> str:
    failed = _header(msg, "x-failed-recipients")
    if failed:
        return getaddresses([failed])[0][1]
    for pattern in _RECIPIENT_PATTERNS:
        match = pattern.search(body)
        if match:
            return match.group(1).rstrip(".")
    match = re.search(rf"<?({_ADDR})>?", line)
    if match:
        return match.group(1).rstrip(".")
    if original is not None:
        return parseaddr(_header(original, "to"))[1]
    return ""


# --- auto-replies (RFC 3834) ---------------------------------------------------------------------


def _auto_reply(msg: Message, subject: str) -> str:
    auto = _header(msg, "auto-submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return f"automatic reply (Auto-Submitted: {auto.split()[0].rstrip(';')})"
    for name in _AUTOREPLY_HEADERS:
        if msg.get(name) is not None:
            return f"automatic reply ({name} header)"
    if _header(msg, "precedence").strip().lower() == "auto_reply":
        return "automatic reply (Precedence: auto_reply)"
    if _VACATION_SUBJECT.search(subject):
        return "automatic reply (vacation subject)"
    return ""


# --- refs, parts and fields ----------------------------------------------------------------------


def _envelope(msg: Message) -> _Envelope:
    verp_ref = unsub_ref = None
    unsubscribe = forged = False
    for name in _ENVELOPE_HEADERS:
        values = [_header_value(value) for value in msg.get_all(name) or ()]
        for _, address in getaddresses(values):
            local = address.rpartition("@")[0].lower()
            if local.startswith("b+"):
                ref = verp_parse(address)
                forged = forged or ref is None
                verp_ref = verp_ref or ref
            elif local.startswith("u+"):
                unsubscribe = True
                ref = unsubscribe_parse(address)
                forged = forged or ref is None
                unsub_ref = unsub_ref or ref
    return _Envelope(verp_ref=verp_ref, unsubscribe_ref=unsub_ref, unsubscribe=unsubscribe, forged=forged)


def _bounce_ref(envelope: _Envelope, original: Message | None) -> tuple[str | None, str]:
    if envelope.forged:
        return None, ""
    if envelope.verp_ref:
        return envelope.verp_ref, "verp"
    if original is not None:
        ref = verp_parse(parseaddr(_header(original, "return-path"))[1])
        if ref:
            return ref, "verp"
    return None, ""


def _find_part(msg: Message, types: tuple[str, ...]) -> Message | None:
    """The first part of one of these types, not looking inside quoted messages."""
    if msg.get_content_type() in types:
        return msg
    if msg.get_content_type() in _ORIGINAL_TYPES or not msg.is_multipart():
        return None
    for sub in msg.get_payload():
        if isinstance(sub, Message):
            found = _find_part(sub, types)
            if found is not None:
                return found
    return None


def _original(msg: Message, tail: str) -> Message | None:
    """The headers of the original message quoted in a report (a message/rfc822 or
    text/rfc822-headers part, or the text after a "copy of the message" marker), or None."""
    part = _find_part(msg, _ORIGINAL_TYPES + _HEADERS_TYPES)
    if part is not None:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return HeaderParser(policy=compat32).parsestr(_part_text(part).lstrip("\r\n"), headersonly=True)
    tail = tail.lstrip("\r\n -")
    if tail and _HEADER_LINE.match(tail.encode("utf-8", "replace")):
        return HeaderParser(policy=compat32).parsestr(tail, headersonly=True)
    return None


def _blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status or feedback-report part: lower-cased names, unfolded
    values, the first of repeated fields."""
    payload = part.get_payload()
    messages: list[Message]
    if isinstance(payload, list):
        messages = [p for p in payload if isinstance(p, Message)]
    else:
        text = _part_text(part)
        messages = [HeaderParser(policy=compat32).parsestr(chunk.strip("\r\n")) for chunk in _BLOCK_SPLIT.split(text)]
    blocks = []
    for message in messages:
        block: dict[str, str] = {}
        for name, value in message.items():
            block.setdefault(name.lower(), " ".join(_header_value(value).split()))
        if block:
            blocks.append(block)
    return blocks


def _human_text(msg: Message) -> str:
    """The readable text of a message: its text/plain and text/html parts (HTML turned into text),
    not the quoted original nor the machine-readable report parts."""
    texts: list[str] = []

    def visit(part: Message) -> None:
        ctype = part.get_content_type()
        if ctype in _ORIGINAL_TYPES or ctype in _HEADERS_TYPES or ctype in _DSN_TYPES:
            return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    visit(sub)
        elif ctype in ("text/plain", "text/html"):
            text = _part_text(part)
            texts.append(_html_to_text(text) if ctype == "text/html" else text)

    visit(msg)
    return "\n".join(texts)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _html_to_text(markup: str) -> str:
    text = _DROP_BLOCKS.sub(" ", markup)
    text = _BREAKS.sub("\n", text)
    text = _TAGS.sub(" ", text)
    text = html.unescape(text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _header_value(value: object) -> str:
    """A header value as text: RFC 2047 words decoded, raw 8-bit bytes read as UTF-8 (Latin-1 when
    they are not UTF-8), unknown charsets as UTF-8 with replacement characters."""
    try:
        chunks = decode_header(value)  # type: ignore[arg-type]
    except Exception:  # a broken encoded word: keep the raw text
        return str(value)
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        if charset in (None, "unknown-8bit"):
            try:
                out.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(chunk.decode("latin-1"))
            continue
        try:
            out.append(chunk.decode(charset, errors="replace"))
        except LookupError:
            out.append(chunk.decode("utf-8", errors="replace"))
    # decode_header drops the spaces between an encoded word and plain text; keep them.
    return "".join(out) if len(out) == 1 else " ".join(part.strip() for part in out)


def _header(msg: Message | None, name: str) -> str:
    if msg is None:
        return ""
    value = msg.get(name)
    return "" if value is None else _header_value(value)


def _subject(msg: Message) -> str:
    return " ".join(_header(msg, "subject").split())


def _strip_type(value: str) -> str:
    """"dns; mx.example.com" -> "mx.example.com"."""
    return value.partition(";")[2].strip() if ";" in value else value.strip()


def _host(value: str) -> str:
    """"dns; mx.example.com. (2a00::1b, the server...)" -> "mx.example.com"."""
    words = _strip_type(value).split()
    return words[0].rstrip(".") if words else ""


def _typed_address(value: str) -> str:
    """"rfc822; jane@example.com" -> "jane@example.com" ("" when it holds no address)."""
    address = _strip_type(value).strip("<> \t")
    return address if "@" in address else ""


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


__all__ = ["HARD", "MAX_PARSE_BYTES", "SOFT", "UNKNOWN", "parse_message"]
