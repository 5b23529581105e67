from __future__ import annotations

import zoneinfo

import pytest

from profiles.fieldtypes import Context, FieldType, FieldValueError, can_convert_all, convert, to_timezone

BERLIN = Context(region="DE", tz=zoneinfo.ZoneInfo("Europe/Berlin"), choices=("bronze", "silver", "gold"))


@pytest.mark.parametrize(
    ("field_type", "raw", "stored"),
    [
        (FieldType.STRING, "  Berlin ", "Berlin"),
        (FieldType.STRING, 42, "42"),
        (FieldType.TEXT, "line 1\nline 2", "line 1\nline 2"),
        (FieldType.INTEGER, "5000", 5000),
        (FieldType.INTEGER, " -12 ", -12),
        (FieldType.INTEGER, 7.0, 7),
        (FieldType.INTEGER, "1_000", 1000),
        (FieldType.DECIMAL, "12.50", 12.5),
        (FieldType.DECIMAL, "12,5", 12.5),
        (FieldType.DECIMAL, "100", 100),
        (FieldType.DECIMAL, 3, 3),
        (FieldType.BOOLEAN, "Yes", True),
        (FieldType.BOOLEAN, "0", False),
        (FieldType.BOOLEAN, False, False),
        (FieldType.BOOLEAN, "да", True),
        (FieldType.DATE, "2024-02-29", "2024-02-29"),
        (FieldType.DATE, "29.02.2024", "2024-02-29"),
        (FieldType.DATE, "2024-02-29T10:00:00Z", "2024-02-29"),
        (FieldType.DATETIME, "2024-05-01T10:30:00+02:00", "2024-05-01T08:30:00Z"),
        (FieldType.DATETIME, "2024-05-01 10:30", "2024-05-01T08:30:00Z"),  # naive = the account's timezone
        (FieldType.DATETIME, "2024-01-15T12:00:00Z", "2024-01-15T12:00:00Z"),
        (FieldType.DATETIME, 1700000000, "2023-11-14T22:13:20Z"),
        (FieldType.DATETIME, "1700000000000", "2023-11-14T22:13:20Z"),
        (FieldType.EMAIL, " Alice@Example.COM ", "alice@example.com"),
        (FieldType.EMAIL, "o'brien+tag@mail.co.uk", "o'brien+tag@mail.co.uk"),
        (FieldType.EMAIL, "jürgen@münchen.de", "jürgen@münchen.de"),
        (FieldType.PHONE, "030 1234567", "+49301234567"),
        (FieldType.PHONE, "+1 (202) 555-0143", "+12025550143"),
        (FieldType.ENUM, "Gold", "gold"),
        (FieldType.LIST, "a, b; c|a", ["a", "b", "c"]),
        (FieldType.LIST, '["x", "y"]', ["x", "y"]),
        (FieldType.LIST, ["x", 1], ["x", "1"]),
        (FieldType.JSON, '{"a": [1, 2]}', {"a": [1, 2]}),
        (FieldType.JSON, {"a": 1}, {"a": 1}),
    ],
)
def test_it_converts_valid_values_to_their_stored_form(field_type, raw, stored):
    assert convert(field_type, raw, BERLIN) == stored


@pytest.mark.parametrize(
    ("field_type", "raw", "reason"),
    [
        (FieldType.STRING, "x" * 1001, "longer than 1,000"),
        (FieldType.STRING, {"a": 1}, "expected text"),
        (FieldType.STRING, "a\x00b", "NUL"),
        (FieldType.INTEGER, "12.5", "not a whole number"),
        (FieldType.INTEGER, "abc", "not a whole number"),
        (FieldType.INTEGER, True, "true/false"),
        (FieldType.INTEGER, str(2**64), "not a whole number"),
        (FieldType.DECIMAL, "1.234,5", "decimal separator"),
        (FieldType.DECIMAL, "NaN", "not a finite number"),
        (FieldType.DECIMAL, "12345678901234567", "15 significant digits"),
        (FieldType.DECIMAL, "ten", "not a number"),
        (FieldType.BOOLEAN, "maybe", "not yes/no"),
        (FieldType.DATE, "2023-02-29", "not a real date"),
        (FieldType.DATE, "02/03/2024", "not a date"),
        (FieldType.DATETIME, "yesterday", "not a date and time"),
        (FieldType.EMAIL, "not-an-email", "not a valid e-mail"),
        (FieldType.EMAIL, "a@b", "not a valid e-mail"),
        (FieldType.EMAIL, "someone@shop.test", "not a valid e-mail"),
        (FieldType.PHONE, "12", "not a valid phone number"),
        (FieldType.PHONE, "hello", "not a phone number"),
        (FieldType.ENUM, "platinum", "not one of: bronze, silver, gold"),
        (FieldType.LIST, "[1, 2", "not a JSON list"),
        (FieldType.LIST, [["nested"]], "must be strings"),
        (FieldType.JSON, "{bad", "not valid JSON"),
    ],
)
def test_it_refuses_invalid_values_with_a_reason(field_type, raw, reason):
    with pytest.raises(FieldValueError, match=reason):
        convert(field_type, raw, BERLIN)


@pytest.mark.parametrize("raw", [None, "", "   ", [], {}])
def test_empty_values_are_none_for_every_type(raw):
    for field_type in FieldType:
        assert convert(field_type, raw, BERLIN) is None


def test_the_email_fast_path_agrees_with_email_validator():
    from email_validator import validate_email

    for address in ["a@example.com", "first.last+x@sub.domain.org", "x_y-z@a-b.io", "UPPER@CASE.COM"]:
        expected = validate_email(address, check_deliverability=False).normalized.lower()
        assert convert(FieldType.EMAIL, address, BERLIN) == expected


def test_timezones_are_canonical_names():
    assert to_timezone("europe/berlin", BERLIN) == "Europe/Berlin"
    with pytest.raises(FieldValueError, match="not a timezone"):
        to_timezone("Mars/Olympus", BERLIN)


def test_a_type_change_check_names_the_first_value_that_would_not_convert():
    assert can_convert_all(FieldType.INTEGER, ["1", "2", None], BERLIN) == (True, "")
    ok, why = can_convert_all(FieldType.INTEGER, ["1", "two"], BERLIN)
    assert not ok and "'two'" in why and "whole number" in why
