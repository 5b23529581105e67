"""The e-mail wire format, built fast from pre-encoded parts (the hot path of every mailing).

Python's `email.message.EmailMessage` costs ~1.5 ms a message; this module joins strings and
bytes instead and costs a few tens of microseconds (see `bench`, and the figure in the
delivery-core report). What it builds:

- multipart/alternative (text first, then html) or a single part when one of them is empty;
  UTF-8; CRLF line endings everywhere.
- Body encodings, picked per part: the HTML part is base64 (binascii + a struct-based line
  splitter: base64 has no whitespace, so DKIM's relaxed body canonicalization is the identity
  and no line can pass the 998-octet limit, whatever the template does); the text part is
  7bit when it is ASCII, has no line over 998 octets and no whitespace that relaxed
  canonicalization would change (the common case: cheap and readable), otherwise base64.
  Quoted-printable is not used: binascii.b2a_qp costs ~60 us on a 6 KB part, six times base64.
  Because of this choice the body this module returns is ALWAYS in DKIM relaxed canonical
  form (`BuiltEmail.body_canonical`), so the signer hashes it without rewriting it.
- Headers: RFC 2047 encoded-words (UTF-8, "B") for non-ASCII Subject / display names, folded
  at 78 columns; CR and LF in any value become spaces (no header injection).
- Message-ID naming the ledger row (`make_message_id`), List-Unsubscribe with https and
  mailto, List-Unsubscribe-Post (RFC 8058), a VERP envelope sender (`verp_address`) signed with
  an HMAC so nobody can forge a bounce for another message (`verp_parse`).
- Work that is the same on every message is done once per process: the From header of a
  sender (an LRU keyed by name and address), the Date of the current second, the VERP HMAC key
  (derived again when SECRET_KEY changes). `build_email` also hands the signer each header in
  DKIM relaxed canonical form (`BuiltEmail.canonical`).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from django.conf import settings

from cdp.hmacs import keyed_sha256

CRLF = b"\r\n"
MAX_LINE = 998  # RFC 5322 hard limit on a line, without its CRLF
_B64_LINE = 76
_WORD_BYTES = 45  # raw bytes per encoded-word: 60 base64 chars + 12 of "=?utf-8?b??=" = 72 <= 75
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
_HEADER_NAME = re.compile(r"^[!-9;-~]+\Z")  # printable ASCII but ":" (RFC 5322 ftext); \Z: no final "\n"
_REF_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_NOT_ONE_ADDRESS = re.compile(r'[\x00-\x20\x7f<>,;"()]')  # whitespace, controls (NUL...), list syntax
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AddressError(ValueError):
    """An address cannot go on the wire as given (control characters, no domain, non-ASCII
    local part which would need SMTPUTF8)."""


@dataclass(slots=True)
class BuiltEmail:
    """A message as header lines and body bytes, so the DKIM signer needs no reparsing.

    headers: (Name, value) in order; a value may be folded ("...\\r\\n ...").
    body: the body bytes (everything after the blank line), CRLF line endings.
    body_canonical: True when `body` is already in DKIM relaxed body canonical form.
    envelope_from: the SMTP MAIL FROM (the VERP Return-Path, or the From address).
    canonical: lowercase header name -> its DKIM relaxed canonical line ("name:value\\r\\n"),
        the last occurrence of each, made by `build_email` along with `headers` (partly from
        caches) so the signer does not canonicalize per message. None: the signer works it
        out from `headers`. Whoever changes `headers` afterwards must drop it (set None).
    """

    headers: list[tuple[str, str]]
    body: bytes
    envelope_from: str
    body_canonical: bool = True
    canonical: dict[str, str] | None = None

    def header_bytes(self) -> bytes:
        return "".join([f"{name}: {value}\r\n" for name, value in self.headers]).encode("ascii")

    def as_bytes(self) -> bytes:
        return self.header_bytes() + CRLF + self.body

    __bytes__ = as_bytes

    def get(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


# --- bodies ------------------------------------------------------------------------------------

_STRUCTS: dict[int, struct.Struct] = {}


def _wrap76(encoded: bytes) -> bytes:
    """Split base64 text into 76-character CRLF lines. One struct.unpack does the slicing in C
    (a Python loop over ~100 slices costs as much as the base64 itself)."""
    count = len(encoded) // _B64_LINE
    if count == 0:
        return encoded
    unpack = _STRUCTS.get(count)
    if unpack is None:
        unpack = _STRUCTS[count] = struct.Struct(f"{_B64_LINE}s" * count)
    lines = list(unpack.unpack_from(encoded))
    rest = encoded[count * _B64_LINE :]
    if rest:
        lines.append(rest)
    return CRLF.join(lines)


def base64_body(data: bytes) -> bytes:
    """RFC 2045 base64 in lines of 76, CRLF between lines, no trailing CRLF."""
    return _wrap76(binascii.b2a_base64(data, newline=False))


def _crlf(data: bytes) -> bytes:
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.replace(b"\n", CRLF)


def _has_long_line(data: bytes) -> bool:
    """Whether some line is longer than 998 octets. Probes aligned windows of 499 bytes with
    bytes.find (C speed): a line of >= 998 octets fully covers at least one window, so a
    window without a newline is the only case that needs the exact (slower) check."""
    size = len(data)
    if size <= MAX_LINE:
        return False
    step = 499
    for start in range(0, size - step + 1, step):
        if data.find(b"\n", start, start + step) == -1:
            return max(map(len, data.split(b"\n"))) > MAX_LINE + 1  # +1: a CR before the LF
    return False


def _text_part(text: str) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, encoded body) for the plain-text part."""
    if text.isascii():
        data = _crlf(text.encode("ascii"))
        # 7bit only when relaxed body canonicalization leaves it unchanged: no tabs, no runs
        # of spaces, no space before a line end, and no trailing blank lines.
        if (
            b"\t" not in data
            and b"  " not in data
            and b" \r\n" not in data
            and not data.endswith((b" ", b"\r\n\r\n"))
            and not _has_long_line(data)
        ):
            return b"7bit", data
    return b"base64", base64_body(_crlf(text.encode("utf-8")))


def _html_part(html: str) -> tuple[bytes, bytes]:
    return b"base64", base64_body(_crlf(html.encode("utf-8")))


# --- headers -----------------------------------------------------------------------------------


def _clean(value: str) -> str:
    # A CR or LF in a value would start a new header (injection): they become spaces.
    if "\r" in value or "\n" in value:
        value = value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return value


def _encoded_words(value: str) -> list[str]:
    """UTF-8 "B" encoded-words of <= 75 characters, never splitting a character."""
    data = value.encode("utf-8")
    words = []
    start, size = 0, len(data)
    while start < size:
        end = min(start + _WORD_BYTES, size)
        while end < size and (data[end] & 0xC0) == 0x80:  # a UTF-8 continuation byte
            end -= 1
        words.append("=?utf-8?b?" + binascii.b2a_base64(data[start:end], newline=False).decode("ascii") + "?=")
        start = end
    return words


def _fold_words(words: list[str], first_width: int) -> str:
    """Join words with spaces, folding ("\\r\\n ") before a word that would pass 78 columns."""
    lines: list[str] = []
    line = ""
    width = first_width
    for word in words:
        if line and width + len(line) + 1 + len(word) > 78:
            lines.append(line)
            line, width = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def encode_header(name: str, value: str) -> str:
    """The header's wire value: ASCII as is (folded at spaces when long), anything else as
    RFC 2047 encoded-words folded at 78 columns."""
    value = _clean(value)
    if value.isascii() and "=?" not in value:
        if len(name) + 2 + len(value) <= 78:
            return value
        return _fold_words(value.split(" "), len(name) + 2) if " " in value else value
    return _fold_words(_encoded_words(value), len(name) + 2)


def canonical_line(lower_name: str, value: str) -> str:
    """DKIM relaxed header canonicalization (RFC 6376 3.4.2) of one header: "name:value\\r\\n"
    with the value unfolded, whitespace runs as one space, none at the ends."""
    return f"{lower_name}:{' '.join(value.split())}\r\n"


def encode_address(address: str) -> str:
    """An addr-spec fit for the wire: the domain in IDNA (ASCII) form. Raises AddressError."""
    address = address.strip()
    if address.isascii():
        if "@" not in address or _NOT_ONE_ADDRESS.search(address):
            raise AddressError(f"Not a single e-mail address: {address!r}")
        return address
    local, _, domain = address.rpartition("@")
    if not local or not domain:
        raise AddressError(f"Not an e-mail address: {address!r}")
    if not local.isascii():
        raise AddressError(f"A non-ASCII local part needs SMTPUTF8, which is not supported: {address!r}")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise AddressError(f"Not a valid domain: {domain!r}") from exc
    return encode_address(f"{local}@{domain}")


def format_address(name: str, address: str, header: str = "From") -> str:
    """`Name <addr>` with the name quoted or encoded as needed (folded when long). Cached: a
    sender's From is the same on every message (an AddressError is raised, not cached)."""
    return _format_address(name, address, header)


@lru_cache(maxsize=256)
def _from_header(name: str, address: str) -> tuple[str, str]:
    """(wire value, DKIM relaxed canonical line) of a From header, per sender."""
    value = _format_address(name, address, "From")
    return value, canonical_line("from", value)


@lru_cache(maxsize=256)
def _format_address(name: str, address: str, header: str) -> str:
    address = encode_address(address)
    name = _clean(name).strip()
    if not name:
        return address
    if name.isascii() and "=?" not in name:
        if _SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        phrase = name
        if len(header) + 2 + len(phrase) + len(address) + 3 > 78:
            return f"{phrase}\r\n <{address}>"
        return f"{phrase} <{address}>"
    words = _encoded_words(name)
    folded = _fold_words(words, len(header) + 2)
    last_line = folded.rsplit("\r\n ", 1)[-1]
    sep = " " if len(last_line) + len(address) + 3 <= 78 else "\r\n "
    return f"{folded}{sep}<{address}>"


_date_cache: tuple[int, str, str] = (0, "", "")


def _date_header(when: datetime | None) -> tuple[str, str]:
    """(wire value, DKIM relaxed canonical line) of the Date header; "now" is cached per second."""
    global _date_cache
    if when is not None:
        value = format_datetime(when if when.tzinfo else when.replace(tzinfo=UTC))
        return value, canonical_line("date", value)
    now = int(time.time())
    if _date_cache[0] != now:
        t = time.gmtime(now)
        value = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
        )
        _date_cache = (now, value, f"date:{value}\r\n")
    return _date_cache[1], _date_cache[2]


def format_date(when: datetime | None = None) -> str:
    """RFC 5322 date in UTC ("Sun, 29 Nov 2026 00:49:48 +0000"), cached per second."""
    return _date_header(when)[0]


def _ref_safe(ref: str) -> str:
    # A ledger ref is nearly always plain ("L12345"): skip the regex then.
    return ref if ref.isascii() and ref.isalnum() else _REF_SAFE.sub("", ref)


def make_message_id(ref: str, domain: str) -> str:
    """`<{ref}.{random}@{domain}>`: the ledger reference first, so a reply or a bounce that
    quotes the Message-ID names the ledger row (`message_id_ref`)."""
    return f"<{_ref_safe(ref)}.{os.urandom(6).hex()}@{domain}>"


def message_id_ref(message_id: str) -> str | None:
    """The ledger reference in a Message-ID this module made, or None."""
    value = message_id.strip().strip("<>")
    local = value.partition("@")[0]
    ref, dot, rand = local.rpartition(".")
    if not dot or not ref or len(rand) != 12:
        return None
    return ref


# --- VERP --------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _verp_key(secret: str) -> Callable[[bytes], bytes]:
    """The VERP MAC, keyed once per SECRET_KEY (so an override in tests, or a reloaded
    configuration, gets its own)."""
    return keyed_sha256(hashlib.sha256(b"cdp-verp:" + secret.encode()).digest(), length=5)


def _verp_mac(ref: str, kind: str) -> str:
    """The MAC of a signed return address: a bounce address ("b") signs the ref, an unsubscribe
    address ("u") signs "u:" + ref, so one kind cannot be made from the other. Lowercased: some
    mail systems lowercase the local part of the address mail goes to."""
    signed = ref if kind == "b" else f"{kind}:{ref}"
    return _verp_key(settings.SECRET_KEY)(signed.lower().encode()).hex()


def _signed_local(ref: str, kind: str) -> str:
    """"{kind}+{ref}.{mac}": the local part of a signed return address."""
    return f"{kind}+{ref}.{_verp_mac(ref, kind)}"


def _signed_ref(address: str, kind: str) -> str | None:
    """The ref of an address made by `_signed_local(ref, kind)`, or None when it is not one or its
    MAC does not match (case-insensitive)."""
    local = address.strip().strip("<>").rpartition("@")[0]
    if not local.lower().startswith(kind + "+"):
        return None
    ref, dot, mac = local[2:].rpartition(".")
    if not dot or not ref or _REF_SAFE.search(ref):
        return None
    if not hmac.compare_digest(mac.lower(), _verp_mac(ref, kind)):
        return None
    return ref


def verp_address(ref: str, return_path_domain: str) -> str:
    """The envelope sender for one message: "b+{ref}.{mac}@{domain}" (e.g.
    b+L123.9f2c4a1b7e@bounces.shop.example). The MAC keeps people from forging bounces."""
    return f"{_signed_local(_ref_safe(ref), 'b')}@{return_path_domain}"


def verp_parse(address: str) -> str | None:
    """The ref of a VERP address made by `verp_address`, or None when it is not one or its
    MAC does not match (comparison is case-insensitive)."""
    return _signed_ref(address, "b")


def unsubscribe_address(ref: str, return_path_domain: str) -> str:
    """The mailto: List-Unsubscribe address for one message: "u+{ref}.{mac}@{domain}", on the
    bounce domain, whose inbound handling reads it back with `unsubscribe_parse`. Its MAC is
    another than the bounce address's ("u:" is part of what is signed), so one cannot be made
    from the other."""
    return f"{_signed_local(_ref_safe(ref), 'u')}@{return_path_domain}"


def unsubscribe_parse(address: str) -> str | None:
    """The ref of an address made by `unsubscribe_address`, or None when it is not one or its MAC
    does not match."""
    return _signed_ref(address, "u")


# --- the message -------------------------------------------------------------------------------


def build_email(
    *,
    from_name: str,
    from_addr: str,
    to: str,
    subject: str,
    html: str,
    text: str,
    message_id: str,
    date: datetime | None = None,
    reply_to: str | None = None,
    list_unsubscribe_https: str | None = None,
    list_unsubscribe_mailto: str | None = None,
    one_click: bool = True,
    return_path: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> BuiltEmail:
    """Build one e-mail. `bytes(result)` is the wire message; `result.envelope_from` is
    `return_path` (the VERP address) or the From address.

    message_id: the full "<...@...>" value (`make_message_id`).
    list_unsubscribe_https: the RFC 8058 one-click URL; with `one_click` the message also gets
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click".
    headers: extra headers (name -> value); names must be plain header names, values are
        encoded like Subject.
    Raises AddressError for an unusable address, ValueError for a bad extra header name or
    when both html and text are empty.
    """
    if not html and not text:
        raise ValueError("An e-mail needs an HTML or a text part.")
    to_wire = encode_address(to)
    from_value, from_canonical = _from_header(from_name, from_addr)
    subject_value = encode_header("Subject", subject)
    date_value, date_canonical = _date_header(date)
    message_id = _clean(message_id)
    out: list[tuple[str, str]] = [
        ("From", from_value),
        ("To", to_wire),
        ("Subject", subject_value),
        ("Date", date_value),
        ("Message-ID", message_id),
    ]
    # The DKIM relaxed form of each header, built alongside (see BuiltEmail.canonical).
    canonical = {
        "from": from_canonical,
        "to": f"to:{to_wire}\r\n",  # an encoded address has no whitespace
        "subject": canonical_line("subject", subject_value),
        "date": date_canonical,
        "message-id": canonical_line("message-id", message_id),
    }
    if reply_to:
        reply_to = encode_address(reply_to)
        out.append(("Reply-To", reply_to))
        canonical["reply-to"] = f"reply-to:{reply_to}\r\n"
    if list_unsubscribe_https or list_unsubscribe_mailto:
        entries = [f"<{_clean(u).strip()}>" for u in (list_unsubscribe_https, list_unsubscribe_mailto) if u]
        value = ", ".join(entries)
        if len(value) + 18 > 78 and len(entries) == 2:
            value = entries[0] + ",\r\n " + entries[1]
        out.append(("List-Unsubscribe", value))
        canonical["list-unsubscribe"] = canonical_line("list-unsubscribe", value)
        if one_click and list_unsubscribe_https:
            out.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            canonical["list-unsubscribe-post"] = "list-unsubscribe-post:List-Unsubscribe=One-Click\r\n"
    if headers:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"Not a header name: {name!r}")
            value = encode_header(name, str(value))
            out.append((name, value))
            lower = name.lower()
            canonical[lower] = canonical_line(lower, value)  # a later occurrence replaces an earlier one
    out.append(("MIME-Version", "1.0"))
    canonical["mime-version"] = "mime-version:1.0\r\n"

    if text and html:
        boundary = "=_cdp" + os.urandom(8).hex()  # "=_" never occurs in base64 or 7bit text
        b = boundary.encode("ascii")
        text_cte, text_body = _text_part(text)
        html_cte, html_body = _html_part(html)
        body = b"".join(
            (
                b"--", b, b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: ",
                text_cte, b"\r\n\r\n", text_body,
                b"\r\n--", b, b"\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: ",
                html_cte, b"\r\n\r\n", html_body,
                b"\r\n--", b, b"--\r\n",
            )
        )
        ctype = f'multipart/alternative; boundary="{boundary}"'
        out.append(("Content-Type", ctype))
        canonical["content-type"] = f"content-type:{ctype}\r\n"
    else:
        if html:
            cte, part, ctype = (*_html_part(html), "text/html")
        else:
            cte, part, ctype = (*_text_part(text), "text/plain")
        out.append(("Content-Type", f"{ctype}; charset=utf-8"))
        out.append(("Content-Transfer-Encoding", cte.decode("ascii")))
        for name, value in out[-2:]:
            canonical[name.lower()] = f"{name.lower()}:{value}\r\n"
        # 7bit text may end with its own line break: another one would be a trailing empty line,
        # which relaxed body canonicalization drops (and the body hash would not match).
        body = part if part.endswith(CRLF) else part + CRLF
        if body == CRLF:  # text that is one line break: its canonical form is the empty body
            return BuiltEmail(headers=out, body=body, envelope_from=return_path or encode_address(from_addr),
                              body_canonical=False, canonical=canonical)
    return BuiltEmail(
        headers=out, body=body, envelope_from=return_path or encode_address(from_addr), canonical=canonical
    )
