"""SMS encodings and segments."""

from __future__ import annotations

import pytest

from content.sms import SmsInfo, sms_info


@pytest.mark.parametrize(("text", "expected"), [
    ("", SmsInfo("GSM-7", 0, 0, 160)),
    ("Hello", SmsInfo("GSM-7", 5, 1, 160)),
    ("a" * 160, SmsInfo("GSM-7", 160, 1, 160)),
    ("a" * 161, SmsInfo("GSM-7", 161, 2, 153)),
    ("a" * 306, SmsInfo("GSM-7", 306, 2, 153)),
    ("a" * 307, SmsInfo("GSM-7", 307, 3, 153)),
    ("€" * 80, SmsInfo("GSM-7", 160, 1, 160)),  # extension characters count two septets
    ("€" * 81, SmsInfo("GSM-7", 162, 2, 153)),
    ("[]{}|^~\\", SmsInfo("GSM-7", 16, 1, 160)),
    ("Ünïcödé? no: ï is not GSM", SmsInfo("UCS-2", 25, 1, 70)),
    ("Привет", SmsInfo("UCS-2", 6, 1, 70)),
    ("я" * 70, SmsInfo("UCS-2", 70, 1, 70)),
    ("я" * 71, SmsInfo("UCS-2", 71, 2, 67)),
    ("😀" * 35, SmsInfo("UCS-2", 70, 1, 70)),  # outside the BMP: two code units each
    ("😀" * 36, SmsInfo("UCS-2", 72, 2, 67)),
    ("Ça coûte 5€", SmsInfo("UCS-2", 11, 1, 70)),  # û is not in GSM-7
    ("Ça va? è é ù ì ò Ç Ø å Δ ß É ¿ ¡ § £ ¥", SmsInfo("GSM-7", 38, 1, 160)),
])
def test_it_counts_encoding_length_and_segments(text: str, expected: SmsInfo) -> None:
    assert sms_info(text) == expected


def test_it_serialises_for_the_api() -> None:
    assert sms_info("hi").as_dict() == {"encoding": "GSM-7", "length": 2, "segments": 1, "per_segment": 160}
