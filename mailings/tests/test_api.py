"""The mailings API: every route, its permissions, another account's ids, and the trigger endpoints."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import IdempotencyKey
from accounts.permissions import Role
from mailings.models import LedgerEntry, Mailing, Run
from mailings.tests.factories import make_mailing

pytestmark = pytest.mark.django_db

BASE = "/api/v1/mailings"


@pytest.fixture
def marketer(world, caller):
    return caller(world.account, Role.MARKETER)


@pytest.fixture
def analyst(world, caller):
    return caller(world.account, Role.ANALYST)


@pytest.fixture
def receipt(world) -> Mailing:
    """A listening API trigger mailing (order confirmations)."""
    return make_mailing(world, name="Order confirmation", kind=Mailing.Kind.TRIGGER, schedule={}, trigger={"on": "api"},
                        transactional=True, state=Mailing.State.SENDING, launched_at=timezone.now())


def test_it_creates_reads_lists_and_changes_a_mailing(world, marketer):
    r = marketer.post(BASE, {"name": "Winter sale", "resource": world.resource.pk, "template": world.template.pk,
                             "sender": world.sender.pk, "schedule": {"mode": "now"}, "categories": ["offers"],
                             "cap": {"max_messages": 3, "days": 7, "scope": "profile"}})
    assert r.status_code == 201, r.json()
    body = r.json()
    assert (body["state"], body["kind"], body["database"], body["categories"]) == ("draft", "broadcast",
                                                                                  world.database.slug, ["offers"])
    assert body["cap"] == {"max_messages": 3, "days": 7, "scope": "profile"} and body["problems"] == {}
    mid = body["id"]
    assert marketer.get(f"{BASE}/{mid}").json()["name"] == "Winter sale"
    r = marketer.patch(f"{BASE}/{mid}", {"name": "Winter sale (final)", "speed_limit": 600})
    assert r.status_code == 200 and (r.json()["name"], r.json()["speed_limit"]) == ("Winter sale (final)", 600)
    page = marketer.get(BASE, {"state": "draft"}).json()
    assert [m["id"] for m in page["items"]] == [mid] and page["next_cursor"] is None
    assert page["items"][0]["figures"]["planned"] == 0
    assert marketer.get(BASE, {"kind": "trigger"}).json()["items"] == []


def test_it_names_the_fields_it_refuses(world, other_world, marketer):
    r = marketer.post(BASE, {"name": "Bad", "resource": other_world.resource.pk, "schedule": {"mode": "sometimes"}})
    assert r.status_code == 422
    locs = {tuple(d["loc"]) for d in r.json()["error"]["details"]}
    assert ("resource",) in locs
    r = marketer.post(BASE, {"name": "Bad cap", "resource": world.resource.pk, "cap": {"max_messages": 99, "days": 7}})
    assert r.status_code == 422 and ["cap", "max_messages"] in [d["loc"] for d in r.json()["error"]["details"]]
    r = marketer.post(BASE, {"name": "Typo", "resource": world.resource.pk, "colour": "blue"})
    assert r.status_code == 422


def test_it_runs_the_state_machine(world, marketer, django_capture_on_commit_callbacks):
    mailing = make_mailing(world, name="Cart", kind=Mailing.Kind.TRIGGER, schedule={},
                           trigger={"on": "event", "event": "order.placed"})
    url = f"{BASE}/{mailing.pk}"
    r = marketer.post(f"{url}/launch")
    assert r.status_code == 200, r.json()
    assert r.json()["state"] == "sending"
    again = marketer.post(f"{url}/launch")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert marketer.post(f"{url}/pause").json()["state"] == "paused"
    with django_capture_on_commit_callbacks(execute=True):
        assert marketer.post(f"{url}/resume").json()["state"] == "sending"
    assert marketer.post(f"{url}/cancel").json()["state"] == "cancelled"
    r = marketer.patch(url, {"name": "Too late"})
    assert r.status_code == 409


def test_it_lists_what_stops_a_launch(world, marketer):
    mailing = make_mailing(world, name="No template", template=None)
    body = marketer.get(f"{BASE}/{mailing.pk}").json()
    assert "template" in body["problems"]
    r = marketer.post(f"{BASE}/{mailing.pk}/launch")
    assert r.status_code == 422 and ["template"] in [d["loc"] for d in r.json()["error"]["details"]]


def test_it_previews_reports_and_logs_recipients(world, marketer, analyst):
    from mailings.tests.factories import make_run, queue_entries

    mailing = make_mailing(world)
    preview = analyst.get(f"{BASE}/{mailing.pk}/preview")
    assert preview.status_code == 200 and preview.json()["sendable"] == 5 and preview.json()["audience"] == 5
    run = make_run(mailing)
    rows = queue_entries(run)
    LedgerEntry.objects.filter(pk=rows[0].pk).update(status="skipped", reason="unsubscribed")
    report = analyst.get(f"{BASE}/{mailing.pk}/report")
    assert report.status_code == 200 and set(report.json()) >= {"figures", "rates", "skipped", "links", "series"}
    assert analyst.get(f"{BASE}/{mailing.pk}/report", {"run": run.pk}).json()["run_id"] == run.pk
    assert analyst.get(f"{BASE}/{mailing.pk}/report", {"run": 999999}).status_code == 404
    page = analyst.get(f"{BASE}/{mailing.pk}/recipients", {"limit": 3}).json()
    assert [r["id"] for r in page["items"]] == sorted((r.pk for r in rows), reverse=True)[:3]
    rest = analyst.get(f"{BASE}/{mailing.pk}/recipients", {"limit": 3, "cursor": page["next_cursor"]}).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    skipped = analyst.get(f"{BASE}/{mailing.pk}/recipients", {"status": "skipped", "reason": "unsubscribed"}).json()
    assert [r["id"] for r in skipped["items"]] == [rows[0].pk]
    assert analyst.get(f"{BASE}/{mailing.pk}/recipients", {"status": "nonsense"}).status_code == 422


def test_it_lets_analysts_read_but_not_write(world, analyst, receipt):
    assert analyst.get(BASE).status_code == 200
    assert analyst.get(f"{BASE}/{receipt.pk}").status_code == 200
    assert analyst.post(BASE, {"name": "X", "resource": world.resource.pk}).status_code == 403
    assert analyst.patch(f"{BASE}/{receipt.pk}", {"name": "X"}).status_code == 403
    for action in ("launch", "pause", "resume", "cancel"):
        assert analyst.post(f"{BASE}/{receipt.pk}/{action}").status_code == 403
    assert analyst.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"email": "person0@example.com"}}).status_code == 403
    assert analyst.post(f"{BASE}/{receipt.pk}/trigger/bulk",
                        {"items": [{"profile": {"email": "person0@example.com"}}]}).status_code == 403


def test_it_wants_a_token(client, receipt):
    assert client.get(BASE).status_code == 401
    assert client.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"id": 1}},
                       content_type="application/json").status_code == 401


def test_it_hides_other_accounts_mailings(world, other_world, caller, receipt):
    charlie = caller(other_world.account, Role.OWNER)
    for path in ("", "/preview", "/report", "/recipients"):
        r = charlie.get(f"{BASE}/{receipt.pk}{path}")
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    assert charlie.patch(f"{BASE}/{receipt.pk}", {"name": "Mine"}).status_code == 404
    for action in ("launch", "pause", "resume", "cancel", "trigger", "trigger/bulk"):
        assert charlie.post(f"{BASE}/{receipt.pk}/{action}", {}).status_code == 404, action
    assert charlie.get(BASE).json()["items"] == []
    assert charlie.get(f"{BASE}/99999999999999999999").status_code == 404


def test_it_fires_a_trigger_once_per_idempotency_key(world, marketer, receipt):
    body = {"profile": {"email": "PERSON0@example.com"}, "data": {"order": {"id": "1001", "total": "59.90"}}}
    first = marketer.post(f"{BASE}/{receipt.pk}/trigger", body, headers={"Idempotency-Key": "order-1001"})
    assert first.status_code == 202, first.json()
    out = first.json()
    assert out["status"] == "queued" and out["profile_id"] == world.profile_ids[0]
    entry = LedgerEntry.objects.get(pk=out["ledger_id"])
    assert entry.trigger_key == "api:order-1001" and entry.data == body["data"]
    replay = marketer.post(f"{BASE}/{receipt.pk}/trigger", body, headers={"Idempotency-Key": "order-1001"})
    assert replay.json()["ledger_id"] == out["ledger_id"] and replay.headers.get("Idempotent-Replayed") == "true"
    # Past the API's replay window the ledger's trigger key still answers the same row.
    IdempotencyKey.objects.all().delete()
    late = marketer.post(f"{BASE}/{receipt.pk}/trigger", body, headers={"Idempotency-Key": "order-1001"})
    assert late.status_code == 202 and late.json()["ledger_id"] == out["ledger_id"]
    assert LedgerEntry.objects.filter(mailing_id=receipt.pk).count() == 1
    assert Run.objects.get(mailing=receipt).planned == 1


def test_a_trigger_call_reads_little(world, marketer, receipt, django_assert_max_num_queries):
    """The trigger API is on the load benchmark's hot path: once the day's run exists and the
    token is known, a call is its key, the mailing, the profile, the subscription and its skip
    test, the day run, the ledger and counter inserts, `planned`, the row and the key's answer
    (plus the savepoints the test's own transaction adds)."""
    body = {"profile": {"email": "person0@example.com"}, "data": {"order": {"id": "1"}}}
    assert marketer.post(f"{BASE}/{receipt.pk}/trigger", body, headers={"Idempotency-Key": "warm"}).status_code == 202
    with django_assert_max_num_queries(15):
        r = marketer.post(f"{BASE}/{receipt.pk}/trigger", body, headers={"Idempotency-Key": "next"})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert Run.objects.get(mailing=receipt).planned == 2


def test_it_upserts_the_profile_before_firing(world, marketer, receipt):
    from profiles.models import Profile
    from resources.models import Subscription

    r = marketer.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"email": "person1@example.com"},
                                                      "fields": {"first_name": "Ann"}})
    assert r.status_code == 202
    assert Profile.objects.get(pk=world.profile_ids[1]).first_name == "Ann"
    # A new person has no subscription: the profile is stored, the trigger refused with the reason.
    r = marketer.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"email": "new@example.com"},
                                                      "fields": {"first_name": "Neo"}})
    assert r.status_code == 422 and "subscription" in r.json()["error"]["message"]
    assert Profile.objects.filter(email="new@example.com").exists()
    assert not Subscription.objects.filter(address="new@example.com").exists()


def test_it_answers_unknown_profiles_and_unfirable_mailings(world, marketer, receipt):
    r = marketer.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"email": "nobody@example.com"}})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["profile", "email"]
    r = marketer.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"shoe_size": 42}})
    assert r.status_code == 422
    broadcast = make_mailing(world)
    r = marketer.post(f"{BASE}/{broadcast.pk}/trigger", {"profile": {"email": "person0@example.com"}})
    assert r.status_code == 409


def test_it_fires_in_bulk_keeping_the_valid_items(world, marketer, receipt):
    from profiles.models import Profile

    Profile.objects.create(account=world.account, database=world.database, email="bare@example.com")
    items = [
        {"profile": {"email": "person0@example.com"}, "data": {"n": 0}, "key": "b-0"},
        {"profile": {"email": "nobody@example.com"}, "key": "b-1"},
        {"profile": {"id": world.profile_ids[2]}, "data": {"n": 2}, "key": "b-2"},
        {"profile": {"email": "bare@example.com"}, "key": "b-3"},
        {"profile": {"email": "person3@example.com"}, "data": "not an object", "key": "b-4"},
        {"profile": "ann", "key": "b-5"},
    ]
    r = marketer.post(f"{BASE}/{receipt.pk}/trigger/bulk", {"items": items})
    assert r.status_code == 200, r.json()
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["queued", "error", "queued", "error", "error", "error"]
    assert (body["queued"], body["skipped"], body["error"]) == (2, 0, 4)
    assert body["results"][1]["errors"][0]["loc"] == ["items", 1, "profile", "email"]
    assert body["results"][4]["errors"][0]["loc"] == ["items", 4, "data"]
    assert LedgerEntry.objects.filter(mailing_id=receipt.pk).count() == 2
    # The same items again: the kept ones answer their rows, nothing new.
    again = marketer.post(f"{BASE}/{receipt.pk}/trigger/bulk", {"items": items[:1]}).json()
    assert again["results"][0]["ledger_id"] == body["results"][0]["ledger_id"]
    too_many = marketer.post(f"{BASE}/{receipt.pk}/trigger/bulk", {"items": [items[0]] * 1001})
    assert too_many.status_code == 422


def test_it_sends_what_the_api_fired(world, marketer, receipt, django_capture_on_commit_callbacks):
    """End to end with the dispatch (eager Celery, the locmem backend): one message, with the data."""
    from delivery.backends import locmem
    from mailings.tests.factories import make_template

    template = make_template(world.account, world.database, name="Receipt", kind="transactional", channels=["email"],
                             email={"subject": "Order {{ data.order.id }}", "preheader": "",
                                    "html": "<p>Total {{ data.order.total }}</p>", "text": ""})
    Mailing.objects.filter(pk=receipt.pk).update(template=template)
    with django_capture_on_commit_callbacks(execute=True):
        r = marketer.post(f"{BASE}/{receipt.pk}/trigger", {"profile": {"email": "person0@example.com"},
                                                          "data": {"order": {"id": "1001", "total": "59.90"}}})
    assert r.status_code == 202
    entry = LedgerEntry.objects.get(pk=r.json()["ledger_id"])
    assert entry.status == "sent", (entry.status, entry.reason, entry.detail)
    assert len(locmem.outbox) == 1
    message = locmem.outbox[0]
    assert (message.to, message.ref) == ("person0@example.com", f"L{entry.pk}")
    assert b"Subject: Order 1001" in message.raw and b"59.90" in message.raw


def test_it_documents_every_route_with_examples():
    from cdp.api.v1 import api

    schema = api.get_openapi_schema()
    paths = {p: v for p, v in schema["paths"].items() if p.startswith("/api/v1/mailings")}
    assert len(paths) == 11
    for name in ("MailingIn", "TriggerIn", "TriggerBulkIn", "TriggerOut", "PreviewOut", "ReportOut"):
        assert schema["components"]["schemas"][name].get("examples"), name
