"""SMS length: encoding, characters and segments (3GPP TS 23.038 / 23.040).

GSM-7 when every character is in the GSM 03.38 default alphabet or its extension table (each
extension character costs two septets: an escape plus the character); UCS-2 otherwise, where
characters outside the Basic Multilingual Plane (most emoji) take two UTF-16 code units.
One segment holds 160 septets (GSM-7) or 70 code units (UCS-2); a longer text is split into
segments of 153 / 67 (the rest is the concatenation header). The editor's JavaScript counter
mirrors these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
SINGLE = {"GSM-7": 160, "UCS-2": 70}
MULTI = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" | "UCS-2"
    length: int  # septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # what one segment holds at this length: 160/153 or 70/67

    def as_dict(self) -> dict[str, object]:
        return {"encoding": self.encoding, "length": self.length, "segments": self.segments,
                "per_segment": self.per_segment}


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_info(text: str) -> SmsInfo:
    """How `text` goes out as SMS. An empty text is 0 segments."""
    if is_gsm7(text):
        encoding = "GSM-7"
        length = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
    else:
        encoding = "UCS-2"
        length = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
    if length == 0:
        return SmsInfo(encoding, 0, 0, SINGLE[encoding])
    if length <= SINGLE[encoding]:
        return SmsInfo(encoding, length, 1, SINGLE[encoding])
    per = MULTI[encoding]
    return SmsInfo(encoding, length, -(-length // per), per)
