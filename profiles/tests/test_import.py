"""The import pipeline (profiles.importing) on the configured database: SQLite by default,
PostgreSQL (the COPY + set-based path) when DATABASE_URL points at one. Bad input of every kind
(RELIABILITY.md F13) is reported per row while the valid rows are kept."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import random
import tracemalloc
from typing import Any

import pytest
from django.db import connection

from accounts.access import Actor
from profiles.fieldtypes import Context, FieldValueError, _phone_e164, to_phone
from profiles.importing import (
    ImportFileError,
    ImportMappingError,
    Options,
    Result,
    auto_mapping,
    converter,
    import_file,
    sniff,
    writable_fields,
)
from profiles.models import Profile, ProfileChange, ProfileDatabase
from profiles.services import Schema, database_create, database_update, field_add, field_update, profile_erase

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    db = database_create(account=acme, name="Shop", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    field_add(database=db, name="points", label="Loyalty points", type="integer", actor=SYSTEM)
    field_add(database=db, name="vip", label="VIP", type="boolean", actor=SYSTEM)
    field_add(database=db, name="signup", label="Signed up", type="datetime", actor=SYSTEM)
    field_add(database=db, name="level", label="Level", type="enum", choices=["gold", "silver"], actor=SYSTEM)
    field_add(database=db, name="tags", label="Tags", type="list", actor=SYSTEM)
    return db


def run(db: ProfileDatabase, content: bytes | str, *, mapping: dict[int, str] | None = None, **options: Any) -> tuple[Result, list[dict[str, str]]]:
    """Import `content` like the task does; returns the result and the error report's rows."""
    data = content.encode() if isinstance(content, str) else content
    file = io.BytesIO(data)
    info = sniff(file, size=len(data))
    mapping = mapping if mapping is not None else auto_mapping(info.headers, writable_fields(db))
    report = io.StringIO()
    opts = Options(mapping, options.pop("match_key", db.default_match_key), **options)
    result = import_file(database=db, file=file, info=info, options=opts, report=report, source="import:test")
    report.seek(0)
    return result, list(csv.DictReader(report))


def emails(db: ProfileDatabase) -> list[str]:
    return sorted(Profile.objects.filter(database=db).values_list("email", flat=True))


def get(db: ProfileDatabase, email: str) -> Profile:
    return Profile.objects.get(database=db, email=email)


# --- reading: encodings, delimiters, quotes -------------------------------------------------------


def test_it_imports_a_utf8_csv_with_columns_mapped_by_name_or_label(shop):
    result, report = run(shop, "E-mail,First name,city,Loyalty points,VIP\nann@example.com,Ann,Berlin,10,yes\nBOB@Example.com,Bob,Paris,0,no\n")
    assert (result.created, result.failed, result.rows) == (2, 0, 2)
    assert report == []
    ann = get(shop, "ann@example.com")
    assert ann.first_name == "Ann" and ann.data == {"city": "Berlin", "points": 10, "vip": True}
    assert get(shop, "bob@example.com").data["vip"] is False  # e-mail normalised to lowercase


def test_it_reads_utf8_with_a_byte_order_mark(shop):
    data = codecs.BOM_UTF8 + "email,first_name\nzoe@example.com,Zoë\n".encode()
    info = sniff(io.BytesIO(data), size=len(data))
    assert info.encoding == "utf-8-sig" and info.headers == ["email", "first_name"]
    result, _ = run(shop, data)
    assert result.created == 1 and get(shop, "zoe@example.com").first_name == "Zoë"


def test_it_reads_cp1251_with_cyrillic_names(shop):
    data = "email;first_name;last_name;city\nivan@example.com;Иван;Петров;Москва\n".encode("cp1251")
    info = sniff(io.BytesIO(data), size=len(data))
    assert (info.encoding, info.delimiter) == ("cp1251", ";")
    result, _ = run(shop, data)
    ivan = get(shop, "ivan@example.com")
    assert result.created == 1 and (ivan.first_name, ivan.last_name, ivan.data["city"]) == ("Иван", "Петров", "Москва")


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_it_sniffs_the_delimiter(shop, delimiter):
    text = delimiter.join(["email", "first_name", "city"]) + "\n" + delimiter.join(["a@example.com", "Ann", "Rome, Italy"]) + "\n"
    if delimiter == ",":
        text = 'email,first_name,city\na@example.com,Ann,"Rome, Italy"\n'
    result, _ = run(shop, text)
    assert result.created == 1 and get(shop, "a@example.com").data["city"] == "Rome, Italy"


def test_it_keeps_newlines_inside_quoted_cells(shop):
    result, report = run(shop, 'email,city,first_name\na@example.com,"Line one\nLine two",Ann\nb@example.com,Oslo,Bob\n')
    assert (result.created, report) == (2, [])
    assert get(shop, "a@example.com").data["city"] == "Line one\nLine two"
    assert get(shop, "b@example.com").first_name == "Bob"


def test_it_reports_a_broken_quote_and_keeps_the_rows_after_it(shop):
    text = 'email,first_name,city\na@example.com,Ann,"Berlin\nb@example.com,Bob,Paris\nc@example.com,Cid,Rome\n'
    result, report = run(shop, text)
    assert emails(shop) == ["b@example.com", "c@example.com"]
    assert result.failed == 1 and result.rows == 3
    assert report[0]["row"] == "2" and "broken quotes" in report[0]["reason"] and "line 2" in report[0]["reason"]


def test_it_reports_a_quote_in_the_middle_of_a_cell(shop):
    result, report = run(shop, 'email,first_name\na@example.com,"Ann"ie\nb@example.com,Bob\n')
    assert emails(shop) == ["b@example.com"] and result.failed == 1
    assert report[0]["row"] == "2" and "broken quotes" in report[0]["reason"]


def test_it_reports_undecodable_bytes_per_row(shop):
    # UTF-8 in the first 64 KB (so sniffed as UTF-8), one bad byte further down.
    lines = [b"email,first_name"] + [f"u{i}@example.com,Ann".encode() for i in range(4000)]
    lines.append(b"bad@example.com,J\xe9r\xf4me")
    lines.append(b"last@example.com,Zed")
    result, report = run(shop, b"\n".join(lines) + b"\n")
    assert result.created == 4001 and result.failed == 1
    assert report[0]["row"] == "4002" and "not valid utf-8" in report[0]["reason"]
    assert not Profile.objects.filter(database=shop, email="bad@example.com").exists()


def test_it_reports_rows_with_more_cells_than_the_header(shop):
    _, report = run(shop, "email,first_name\na@example.com,Ann,extra\nb@example.com,Bob\nc@example.com\n")
    assert emails(shop) == ["b@example.com", "c@example.com"]  # a short row just has empty cells
    assert "3 cells but the header has 2" in report[0]["reason"]


def test_it_skips_blank_rows_without_counting_them(shop):
    result, report = run(shop, "email,first_name\n\na@example.com,Ann\n,\n   ,  \n")
    assert (result.rows, result.created, result.failed, report) == (1, 1, 0, [])


# --- bad files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\n\n  \n", "empty"),
        (b"email,first_name\n", "no data rows"),
        (bytes(range(256)) * 40, "binary"),
        (gzip.compress(b"email\na@example.com\n", mtime=0), "gzip"),  # mtime=0: the same id in every xdist worker
        (b"%PDF-1.7 blah", "PDF"),
        (b"PK\x03\x04not really a zip", "damaged"),
    ],
)
def test_it_refuses_files_it_cannot_read_with_a_clear_message(content, message):
    with pytest.raises(ImportFileError, match=message):
        sniff(io.BytesIO(content), size=len(content))


def test_it_refuses_a_file_over_the_size_limit(settings):
    settings.PROFILE_IMPORT_MAX_BYTES = 100
    content = b"email\n" + b"a@example.com\n" * 20
    with pytest.raises(ImportFileError, match="limit is"):
        sniff(io.BytesIO(content), size=len(content))


def test_it_imports_xlsx_and_reads_numbers_and_dates_as_values(shop):
    from datetime import date, datetime

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["email", "first_name", "points", "birthday", "signup", "phone"])
    ws.append(["a@example.com", "Ann", 12.0, date(1990, 5, 17), datetime(2024, 1, 2, 3, 4, 5), "+4915112345678"])
    ws.append(["b@example.com", "Bob", "many", None, None, None])
    ws.append([None, None, None, None, None, None])
    ws.append(["c@example.com", "=A2", 3, None, None, 4915112345678.0])
    buf = io.BytesIO()
    wb.save(buf)
    info = sniff(io.BytesIO(buf.getvalue()), size=len(buf.getvalue()))
    assert info.format == "xlsx" and info.headers[:2] == ["email", "first_name"] and info.rows_estimate == 4
    result, report = run(shop, buf.getvalue())
    assert (result.created, result.failed) == (1, 2)
    a = get(shop, "a@example.com")
    signup = Schema.load(shop).convert("signup", datetime(2024, 1, 2, 3, 4, 5))  # in the account's timezone
    assert (a.data["points"], a.birthday.isoformat(), a.data["signup"], a.phone) == (12, "1990-05-17", signup, "+4915112345678")
    assert report[0]["row"] == "3" and report[0]["column"] == "points"
    # A number cell loses its "+": without a country code it is not a valid phone (a clear error).
    assert report[1]["row"] == "5" and report[1]["column"] == "phone" and report[1]["value"] == "4915112345678"


# --- values -----------------------------------------------------------------------------------------


def test_it_reports_invalid_values_per_row_and_keeps_the_valid_rows(shop):
    text = (
        "email,phone,birthday,points,level,gender,first_name\n"
        "good@example.com,+4915112345678,1990-05-17,5,gold,female,Gus\n"
        "not-an-email,+4915112345679,,,,,\n"
        "p@example.com,12,,,,,\n"
        "d@example.com,,1990-02-31,,,,\n"
        "i@example.com,,,1.5,,,\n"
        "e@example.com,,,,platinum,,\n"
        "g@example.com,,,,,robot,Gia\n"
        ",,,,,,Nobody\n"
        "ok@example.com,,17.05.1990,7,Silver,,Olga\n"
    )
    result, report = run(shop, text)
    assert emails(shop) == ["good@example.com", "ok@example.com"]
    assert (result.rows, result.created, result.failed) == (9, 2, 7)
    by_row = {r["row"]: r for r in report}
    assert by_row["3"]["column"] == "email" and by_row["3"]["value"] == "not-an-email" and "e-mail" in by_row["3"]["reason"]
    assert by_row["4"]["column"] == "phone" and by_row["4"]["value"] == "12" and "phone" in by_row["4"]["reason"]
    assert by_row["5"]["column"] == "birthday" and "not a real date" in by_row["5"]["reason"]
    assert by_row["6"]["column"] == "points" and "whole number" in by_row["6"]["reason"]
    assert by_row["7"]["column"] == "level" and "gold, silver" in by_row["7"]["reason"]
    assert by_row["8"]["column"] == "gender" and by_row["8"]["value"] == "robot"
    assert by_row["9"]["column"] == "email" and "match key" in by_row["9"]["reason"]
    ok = get(shop, "ok@example.com")
    assert (ok.birthday.isoformat(), ok.data["level"], ok.data["points"]) == ("1990-05-17", "silver", 7)


def test_it_stores_formula_cells_as_data_and_defuses_them_in_the_error_report(shop):
    text = 'email,first_name,points\nf@example.com,"=HYPERLINK(""http://x"")",1\ng@example.com,+cmd,=1+2\n'
    result, report = run(shop, text)
    assert get(shop, "f@example.com").first_name == '=HYPERLINK("http://x")'
    assert result.failed == 1 and report[0]["value"] == "'=1+2"
    out = io.StringIO()
    from profiles.importing import ErrorReport

    ErrorReport(out).add(2, "@col", "-2+3", "why")
    assert out.getvalue().splitlines()[1] == "2,'@col,'-2+3,why"


def test_it_keeps_the_last_row_of_a_repeated_key_and_counts_the_others(shop):
    text = "email,first_name,city\nd@example.com,First,A\nx@example.com,X,B\nD@example.com,Second,C\nd@example.com,Third,\n"
    result, report = run(shop, text)
    d = get(shop, "d@example.com")
    assert (result.rows, result.created, result.duplicates, result.failed) == (4, 2, 2, 0)
    assert d.first_name == "Third" and d.data == {}  # the last row wins, whole (its empty city stays empty)
    assert sorted(r["row"] for r in report) == ["2", "4"] and "row 5" in report[0]["reason"]


def test_it_changes_nothing_when_the_same_file_runs_again(shop):
    text = "email,first_name,points,vip,signup,tags\na@example.com,Ann,1,yes,2024-05-01T10:30:00+02:00,x;y\nb@example.com,Bob,2,no,,\n"
    first, _ = run(shop, text)
    before = {p.pk: (p.updated_at, p.data) for p in Profile.objects.filter(database=shop)}
    again, _ = run(shop, text)
    assert (first.created, again.created, again.updated, again.unchanged) == (2, 0, 0, 2)
    assert {p.pk: (p.updated_at, p.data) for p in Profile.objects.filter(database=shop)} == before
    assert not ProfileChange.objects.filter(profile__database=shop).exists()
    assert get(shop, "a@example.com").data["signup"] == "2024-05-01T08:30:00Z"


def test_it_updates_changed_profiles_and_logs_what_changed(shop):
    run(shop, "email,first_name,city,points\na@example.com,Ann,Berlin,1\nb@example.com,Bob,Paris,2\n")
    result, _ = run(shop, "email,first_name,city,points\na@example.com,Anna,Berlin,5\nb@example.com,Bob,Paris,2\n")
    assert (result.updated, result.unchanged, result.created) == (1, 1, 0)
    change = ProfileChange.objects.get(profile__email="a@example.com")
    assert change.changes == {"first_name": ["Ann", "Anna"], "points": [1, 5]}
    assert change.source == "import:test"


def test_it_leaves_stored_values_alone_for_empty_cells(shop):
    run(shop, "email,first_name,city,birthday\na@example.com,Ann,Berlin,1990-01-01\n")
    result, _ = run(shop, "email,first_name,city,birthday\na@example.com,,,\n")
    a = get(shop, "a@example.com")
    assert result.unchanged == 1 and (a.first_name, a.data["city"], str(a.birthday)) == ("Ann", "Berlin", "1990-01-01")


def test_it_clears_values_for_empty_cells_when_asked(shop):
    run(shop, "email,first_name,city,birthday,points\na@example.com,Ann,Berlin,1990-01-01,3\n")
    result, _ = run(shop, "email,first_name,city,birthday\na@example.com,,,\n", clear_empty=True)
    a = get(shop, "a@example.com")
    assert result.updated == 1
    assert (a.first_name, a.birthday, a.data) == ("", None, {"points": 3})  # unmapped columns stay
    assert ProfileChange.objects.get(profile=a).changes == {
        "first_name": ["Ann", None], "birthday": ["1990-01-01", None], "city": ["Berlin", None],
    }


def test_it_only_adds_in_insert_mode(shop):
    run(shop, "email,first_name\na@example.com,Ann\n")
    result, _ = run(shop, "email,first_name\na@example.com,Changed\nn@example.com,New\n", mode="insert")
    assert (result.created, result.updated, result.skipped, result.skipped_mode) == (1, 0, 1, 1)
    assert get(shop, "a@example.com").first_name == "Ann"


def test_it_only_updates_in_update_mode(shop):
    run(shop, "email,first_name\na@example.com,Ann\n")
    result, _ = run(shop, "email,first_name\na@example.com,Changed\nn@example.com,New\n", mode="update")
    assert (result.created, result.updated, result.skipped) == (0, 1, 1)
    assert emails(shop) == ["a@example.com"] and get(shop, "a@example.com").first_name == "Changed"


def test_it_skips_erased_people_unless_told_otherwise(shop):
    run(shop, "email,first_name\ngone@example.com,Gone\n")
    profile_erase(profile=get(shop, "gone@example.com"), actor=SYSTEM)
    result, _ = run(shop, "email,first_name\nGONE@example.com,Back\nstay@example.com,Stay\n")
    assert (result.created, result.skipped, result.skipped_erased) == (1, 1, 1)
    assert emails(shop) == ["stay@example.com"]
    result, _ = run(shop, "email,first_name\ngone@example.com,Back\n", skip_erased=False)
    assert result.created == 1


def test_it_reports_a_unique_value_that_another_profile_holds(shop):
    run(shop, "email,phone\nowner@example.com,+4915112345678\n")
    text = "email,phone\nthief@example.com,+4915112345678\ntwin1@example.com,+4915199999999\ntwin2@example.com,+4915199999999\n"
    result, report = run(shop, text)
    assert (result.failed, result.created) == (2, 1)
    assert [r["row"] for r in report] == ["2", "3"]
    assert "already has this Phone" in report[0]["reason"] and "row 4 has the same Phone" in report[1]["reason"]
    assert get(shop, "twin2@example.com").phone == "+4915199999999"


def test_it_requires_required_fields_for_new_profiles_only(shop):
    run(shop, "email\nold@example.com\n")
    field_update(field=shop.fields.get(name="city"), required=True, actor=SYSTEM)
    result, report = run(shop, "email,city,first_name\nold@example.com,,Olga\nnew@example.com,,Nina\nfull@example.com,Rome,Fay\n")
    assert (result.updated, result.created, result.failed) == (1, 1, 1)
    assert report[0]["row"] == "3" and "required for a new profile" in report[0]["reason"]
    result, report = run(shop, "email,city\nold@example.com,\n", clear_empty=True)
    assert result.failed == 1 and "City is required" in report[0]["reason"]


def test_it_gives_new_profiles_the_field_defaults(shop):
    field_add(database=shop, name="source", label="Source", type="string", default="import", actor=SYSTEM)
    run(shop, "email\nold@example.com\n")
    Profile.objects.filter(email="old@example.com").update(data={"source": "shop"})
    run(shop, "email,first_name\nold@example.com,Old\nnew@example.com,New\n")
    assert get(shop, "new@example.com").data["source"] == "import"
    assert get(shop, "old@example.com").data["source"] == "shop"


def test_it_matches_on_a_unique_custom_field(shop):
    field_add(database=shop, name="customer_no", label="Customer number", type="integer", unique=True, actor=SYSTEM)
    database_update(database=shop, match_keys=["email", "customer_no"], actor=SYSTEM)
    run(shop, "customer_no,email,first_name\n7,a@example.com,Ann\n")
    result, _ = run(shop, "customer_no,first_name\n7,Annie\n8,Ben\n", match_key="customer_no")
    assert (result.updated, result.created) == (1, 1)
    assert Profile.objects.get(database=shop, data__customer_no=7).first_name == "Annie"
    assert Profile.objects.get(database=shop, data__customer_no=8).email is None


def test_it_refuses_a_mapping_without_the_match_key(shop):
    with pytest.raises(ImportMappingError, match="match key"):
        run(shop, "first_name,city\nAnn,Rome\n")
    with pytest.raises(ImportMappingError, match="both map to"):
        run(shop, "email,name,first\na@example.com,A,B\n", mapping={0: "email", 1: "first_name", 2: "first_name"})
    assert not Profile.objects.filter(database=shop).exists()


def test_it_auto_maps_headers_ignoring_case_spaces_and_dashes(shop):
    fields = writable_fields(shop)
    assert auto_mapping(["E-Mail", "first name", "LOYALTY_POINTS", "Loyalty-Points", "zip"], fields) == {
        0: "email", 1: "first_name", 2: "points"
    }


# --- the fast paths agree with the field types ------------------------------------------------------------


def test_the_phone_fast_path_agrees_with_to_phone():
    import phonenumbers

    rng = random.Random(3)
    samples = [f"+49151{i:08d}" for i in range(50)]
    for region in ("US", "DE", "GB", "IT", "RU", "AR", "BR", "MX", "FR", "IN", "CN", "AU", "JP", "CH", "NL"):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            text = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            samples += [text] + [text[:-2] + f"{rng.randrange(100):02d}" for _ in range(20)]
    samples += ["+" + "".join(rng.choice("0123456789") for _ in range(rng.randint(7, 15))) for _ in range(2000)]
    fast_hits = 0
    for text in samples:
        try:
            official = to_phone(text, Context(region="DE"))
        except FieldValueError:
            official = None
        fast = _phone_e164(text) if text[1] != "0" else None
        if fast is not None:
            fast_hits += 1
            assert fast == official, text
    assert fast_hits > 200


@pytest.mark.parametrize(
    ("type_", "values"),
    [
        ("string", ["  a ", "", " ", "x" * 1001, "nul\x00", 12, 1.5]),
        ("integer", ["12", " 12 ", "-3", "+4", "1_000", "٣", "1.0", "12345678901234567890", "x", 7, 7.0, True]),
        ("boolean", ["Yes", " no ", "1", "0", "да", "maybe", True, 1]),
        ("date", ["2024-02-29", "2023-02-29", "01.02.2024", "2024-01-01T10:00:00", "2024-W01-1", "20240101"]),
        ("datetime", ["2024-05-01T10:30:00Z", "0999-05-01T10:30:00Z", "2024-05-01T10:30:60Z", "2024-05-01 10:30", "1714559400"]),
        ("email", ["A@Example.COM", " a@b.co ", "bad", "a@localhost.test"]),
        ("phone", ["+4915112345678", "+49 151 12345678", "030 1234567", "+12025550123", "+0123", "12"]),
    ],
)
def test_the_fast_converters_agree_with_schema_convert(shop, type_, values):
    from profiles.models import Field

    f = Field(database=shop, name=f"x_{type_}", label="X", type=type_)
    sch = Schema.load(shop)
    sch.fields[f.name] = f
    conv = converter(sch, f)
    for value in values:
        try:
            expected: Any = sch.convert(f.name, value)
        except FieldValueError as exc:
            expected = ("error", str(exc))
        try:
            got: Any = conv(value)
        except FieldValueError as exc:
            got = ("error", str(exc))
        assert got == expected, value


# --- scale ----------------------------------------------------------------------------------------------


def _csv(rows: int) -> bytes:
    lines = ["email,first_name,city,points"] + [f"user{i}@example.com,Name {i},City {i % 50},{i}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_it_reads_in_batches_so_memory_does_not_grow_with_the_file(shop, monkeypatch):
    from profiles import importing
    from profiles.importing import running

    monkeypatch.setattr(running, "BATCH_ROWS", 2000)

    def peak(rows: int) -> int:
        data = _csv(rows)
        info = sniff(io.BytesIO(data), size=len(data))
        mapping = auto_mapping(info.headers, writable_fields(shop))

        class Nowhere(importing.Writer):
            def stage(self, rows: Any) -> None:
                pass

        plan = importing.Plan.build(shop, info.headers, Options(mapping, "email"))
        records = importing.open_records(io.BytesIO(data), info)
        tracemalloc.start()
        importing._read(plan, records, Nowhere(plan), importing.ErrorReport(None), None, info)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak(4_000), peak(20_000)
    assert large < small * 1.5, (small, large)


def test_it_stages_many_rows_on_this_database(shop):
    result, report = run(shop, _csv(12_000))
    assert (result.created, result.failed, report) == (12_000, 0, [])
    again, _ = run(shop, _csv(12_000))
    assert (again.unchanged, again.updated) == (12_000, 0)
    assert connection.vendor in ("sqlite", "postgresql")


def test_it_imports_json_and_list_values_and_refuses_what_the_database_cannot_store(shop):
    field_add(database=shop, name="prefs", label="Preferences", type="json", actor=SYSTEM)
    text = 'email,prefs,tags\na@example.com,"{""a"": null, ""b"": [1, 2]}",x|y\nb@example.com,"{""a"": ""\\u0000""}",\n'
    result, report = run(shop, text)
    assert (result.created, result.failed) == (1, 1)
    assert get(shop, "a@example.com").data == {"prefs": {"a": None, "b": [1, 2]}, "tags": ["x", "y"]}
    assert report[0]["row"] == "3" and "NUL" in report[0]["reason"]
