"""manage.py import_events: JSON Lines and CSV, errors by line number, re-runs store nothing twice."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone as tz

from accounts.models import AuditEvent
from history.catalogue import type_id
from history.models import Event
from profiles.models import Profile


def _run(*args: str) -> tuple[str, str, CommandError | None]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_events", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


def _jsonl(path: Path, lines: list[object | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _ago(**kw) -> str:
    return (tz.now() - timedelta(**kw)).isoformat()


def test_it_imports_json_lines_and_a_rerun_stores_nothing_twice(tmp_path, acme, shop, anna, ben, cart_abandoned):
    path = _jsonl(tmp_path / "events.jsonl", [
        {"id": "j-1", "event": "order.placed", "time": _ago(days=3), "profile": {"email": anna.email},
         "properties": {"order_id": "7", "total": "10.50"}},
        {"id": "j-2", "event": "cart_abandoned", "time": _ago(days=2), "profile": {"customer_id": "C-1"}, "properties": {"sku": "K"}},
        "",
        {"id": "j-3", "event": "page.viewed", "profile": {"id": ben.pk}, "channel": "web"},
    ])
    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is None and err == ""
    assert out.splitlines()[-1] == "lines=3 stored=3 duplicate=0 error=0 profiles_created=0"
    order = Event.objects.get(idempotency_key="j-1")
    assert (order.profile_id, order.type_id, order.source) == (anna.pk, type_id("order.placed"), "import")
    assert order.properties == {"order_id": "7", "total": 10.5}

    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug, "--batch", "2")
    assert failed is None
    assert out.splitlines()[-1] == "lines=3 stored=0 duplicate=3 error=0 profiles_created=0"
    assert Event.objects.filter(account_id=acme.pk).count() == 3
    audit = AuditEvent.objects.filter(account=acme, verb="history.events_imported").order_by("pk").last()
    assert audit.data["duplicate"] == 3 and audit.target_label.endswith("events.jsonl")


def test_refused_lines_are_reported_by_number_and_the_rest_is_kept(tmp_path, acme, shop, anna, cart_abandoned):
    path = _jsonl(tmp_path / "events.jsonl", [
        {"id": "e-1", "event": "page.viewed", "profile": {"email": anna.email}},           # 1
        '{"id": "e-2", "event": "page.viewed", "profile": ',                               # 2 broken JSON
        {"id": "e-3", "event": "cart_abandoned", "profile": {"email": anna.email},
         "properties": {"sku": "A", "price": "lots"}},                                     # 3 wrong type
        {"id": "e-4", "event": "page.viewed", "profile": {"email": "ghost@shop.example.com"}},  # 4 unknown profile
        {"id": "e-5", "event": "page.viewed", "time": "2999-01-01T00:00:00Z", "profile": {"email": anna.email}},  # 5
        {"id": "e-1", "event": "page.viewed", "profile": {"email": anna.email}},           # 6 duplicate
        {"id": "e-7", "event": "page.viewed", "profile": {"email": anna.email}},           # 7
    ])
    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is not None and failed.returncode == 1 and "4 line(s) were refused" in str(failed)
    assert out.splitlines()[-1] == "lines=7 stored=2 duplicate=1 error=4 profiles_created=0"
    errors = err.splitlines()
    assert errors[0].startswith("line 2: is not valid JSON: Expecting value at column")
    assert errors[1].startswith("line 3: properties.price: ")
    assert errors[2] == "line 4: profile.email: no profile with this key (this token may not create profiles)"
    assert errors[3].startswith("line 5: time: ") and "future" in errors[3]
    assert sorted(Event.objects.filter(account_id=acme.pk).values_list("idempotency_key", flat=True)) == ["e-1", "e-7"]

    report = tmp_path / "errors.csv"
    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug, "--errors", str(report))
    assert failed is not None and err == "" and str(report) in str(failed)
    rows = list(csv.reader(report.open(encoding="utf-8")))
    assert rows[0] == ["line", "field", "message"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("2", ""), ("3", "properties.price"), ("4", "profile.email"), ("5", "time")]
    assert out.splitlines()[-1] == "lines=7 stored=0 duplicate=3 error=4 profiles_created=0"


def test_it_imports_a_csv_with_line_numbers_across_quoted_line_breaks(tmp_path, acme, shop, anna, cart_abandoned):
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "event", "time", "profile_key", "profile_value", "properties", "channel", "resource"])
        w.writerow(["c-1", "cart_abandoned", _ago(days=1), "email", anna.email, '{"sku": "A-1", "price": "5"}', "web", ""])  # 2
        w.writerow(["c-2", "form.submitted", "", "customer_id", "C-1", '{"form": "newsletter",\n "url": "/join"}', "", ""])        # 3-4
        w.writerow(["c-3", "page.viewed", "", "email", anna.email, "{not json", "", ""])                                 # 5
        w.writerow(["c-4", "page.viewed", "", "email", anna.email, "", "", "no-such-resource"])                          # 6
        w.writerow(["c-5", "page.viewed", "", "email", anna.email])                                                      # 7
        w.writerow(["c-6", "page.viewed", "", "", "", "", "", ""])                                                       # 8
        w.writerow(["c-7", "page.viewed", "", "email", anna.email, "", "app", ""])                                       # 9
    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is not None and failed.returncode == 1
    assert out.splitlines()[-1] == "lines=7 stored=3 duplicate=0 error=4 profiles_created=0"
    assert err.splitlines() == [
        "line 5: properties: is not valid JSON: Expecting property name enclosed in double quotes at character 2",
        "line 6: resource: 'no-such-resource' is not a resource of database 'shop-customers'",
        "line 7: has 5 cells; the header has 8",
        "line 8: profile_key: name the match key (e.g. email, or id)",
    ]
    cart = Event.objects.get(idempotency_key="c-1")
    assert cart.properties == {"sku": "A-1", "price": 5} and cart.channel == "web"
    assert Event.objects.get(idempotency_key="c-2").properties == {"form": "newsletter", "url": "/join"}
    assert Event.objects.get(idempotency_key="c-7").channel == "app"

    out, _, _ = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert out.splitlines()[-1] == "lines=7 stored=0 duplicate=3 error=4 profiles_created=0"


def test_it_creates_profiles_only_when_asked(tmp_path, acme, shop):
    path = tmp_path / "signups.csv"
    path.write_text("event,profile_key,profile_value,id\nform.submitted,email,new@shop.example.com,s-1\n", encoding="utf-8")
    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is not None and "profile.email" in err
    out, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug, "--create-profiles")
    assert failed is None and out.splitlines()[-1] == "lines=1 stored=1 duplicate=0 error=0 profiles_created=1"
    assert Profile.objects.filter(database=shop, email="new@shop.example.com").exists()


def test_it_says_when_a_rerun_would_store_lines_again(tmp_path, shop, anna):
    path = _jsonl(tmp_path / "no-ids.ndjson", [{"event": "page.viewed", "profile": {"email": anna.email}}])
    out, _, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is None and "1 stored event(s) had no id" in out


def test_platform_types_need_the_flag(tmp_path, acme, shop, anna):
    path = _jsonl(tmp_path / "old-esp.jsonl", [{"id": "esp-1", "event": "message.opened", "time": _ago(days=30),
                                                "profile": {"email": anna.email}, "channel": "email"}])
    _, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is not None and "recorded by the platform" in err
    _, _, failed = _run(str(path), "--account", "acme", "--database", shop.slug, "--platform-types")
    assert failed is None and Event.objects.get(idempotency_key="esp-1").type_id == type_id("message.opened")


def test_lines_that_are_not_utf8_are_refused_alone(tmp_path, acme, shop, anna):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps({"id": "u-1", "event": "page.viewed", "profile": {"email": anna.email}}).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + b'{"id": "u-2", "event": "caf\xe9"}\n')
    _, err, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is not None and err.strip() == "line 2: is not UTF-8 text"
    assert Event.objects.filter(idempotency_key="u-1").exists()


@pytest.mark.parametrize(("content", "says"), [
    ("event,profile_key,profile_value,colour\n", "Unknown column(s): 'colour'"),
    ("event,profile_value\n", "Missing column(s): profile_key"),
])
def test_a_csv_header_that_does_not_fit_stops_before_anything_is_stored(tmp_path, shop, content, says):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    _, _, failed = _run(str(path), "--account", "acme", "--database", shop.slug)
    assert failed is not None and says in str(failed)


def test_it_refuses_unknown_accounts_databases_and_files(tmp_path, shop, gina):
    path = _jsonl(tmp_path / "e.jsonl", [])
    assert "No account" in str(_run(str(path), "--account", "nope", "--database", shop.slug)[2])
    assert "No profile database" in str(_run(str(path), "--account", "acme", "--database", gina.database.slug)[2])
    assert "no such file" in str(_run(str(tmp_path / "missing.jsonl"), "--account", "acme", "--database", shop.slug)[2])
    assert "--batch" in str(_run(str(path), "--account", "acme", "--database", shop.slug, "--batch", "5000")[2])
