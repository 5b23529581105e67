from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, AuditEvent, IdempotencyKey, Invitation, Job
from accounts.permissions import Role


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_it_answers_the_account_of_the_token(api, api_token, acme):
    response = api(api_token(acme, Role.ANALYST, name="reporting")).get("/api/v1/account")
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "acme" and body["name"] == "Acme" and body["timezone"] == "Europe/Berlin"
    assert body["token"] == {"name": "reporting", "role": "analyst"}
    assert response["X-RateLimit-Limit"]


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer cdp_not-a-token", "Basic dXNlcjpwYXNz", "Token x"]
)
def test_it_refuses_missing_or_bad_tokens_with_401(db, client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/account", headers=headers)
    assert response.status_code == 401
    assert _error(response)["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_or_expired_token_stops_working(api, api_token, acme, monkeypatch):
    from accounts.access import Actor
    from accounts.services import api_token_revoke

    raw = api_token(acme)
    token = ApiToken.objects.get()
    token.expires_at = timezone.now() + timedelta(seconds=30)
    token.save()
    assert api(raw).get("/api/v1/account").status_code == 200  # from here on kept by the process
    later = timezone.now() + timedelta(seconds=31)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert api(raw).get("/api/v1/account").status_code == 401  # expired: checked on every use
    monkeypatch.undo()
    token.expires_at = None
    token.save()
    assert api(raw).get("/api/v1/account").status_code == 200
    api_token_revoke(token=token, actor=Actor.system())
    assert api(raw).get("/api/v1/account").status_code == 401


def test_a_token_revoked_by_another_process_stops_working_at_its_next_request(api, api_token, acme):
    from django.core.cache import cache

    from cdp import confcache

    raw = api_token(acme)
    assert api(raw).get("/api/v1/account").status_code == 200
    # Another process revokes it: the row changes (no signal in this process) and the shared
    # configuration generation moves.
    ApiToken.objects.update(revoked_at=timezone.now())
    client = confcache.raw_client()
    if client is not None:
        client.set(cache.make_and_validate_key(confcache.KEY), "moved")
    else:
        cache.set(confcache.KEY, "moved", timeout=None)
    assert api(raw).get("/api/v1/account").status_code == 401


def test_a_request_cannot_leave_its_in_memory_changes_to_the_next(api, api_token, acme):
    from cdp.api.auth import token_lookup

    raw = api_token(acme)
    assert api(raw).get("/api/v1/account").status_code == 200  # cached from here on
    first = token_lookup(raw, cached=True)
    first.role, first.account.name = "owner", "Scribbled"  # changed in memory, never saved
    again = token_lookup(raw, cached=True)
    assert again.role != "owner" and again.account.name == "Acme"


def test_a_change_made_behind_the_apps_back_is_seen_within_a_minute(api, api_token, acme, monkeypatch):
    from cdp import confcache

    raw = api_token(acme)
    assert api(raw).get("/api/v1/account").status_code == 200
    ApiToken.objects.update(revoked_at=timezone.now())  # raw SQL, say: no signal, no generation bump
    start = confcache._clock()
    monkeypatch.setattr(confcache, "_clock", lambda: start + confcache.MAX_AGE + 1)
    assert api(raw).get("/api/v1/account").status_code == 401


def test_it_stores_only_a_hash_and_records_last_use(api, api_token, acme):
    raw = api_token(acme)
    token = ApiToken.objects.get()
    assert raw not in token.token_hash and len(token.token_hash) == 64
    assert token.last_used_at is None
    api(raw).get("/api/v1/account")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_session_cookie_is_not_an_api_credential(login, olivia):
    assert login(olivia).get("/api/v1/account").status_code == 401


def test_the_token_role_limits_what_it_can_do(api, api_token, acme):
    analyst = api(api_token(acme, Role.ANALYST))
    response = analyst.post("/api/v1/account/invitations", {"email": "x@acme.test", "role": "analyst"})
    assert response.status_code == 403
    assert _error(response)["code"] == "forbidden"
    assert analyst.get("/api/v1/audit-events").status_code == 403
    assert analyst.get("/api/v1/jobs").status_code == 200
    admin = api(api_token(acme, Role.ADMIN))
    assert admin.post("/api/v1/account/invitations", {"email": "x@acme.test", "role": "owner"}).status_code == 409
    assert admin.post("/api/v1/account/invitations", {"email": "x@acme.test", "role": "admin"}).status_code == 201


def test_an_invitation_by_api_is_audited_as_the_token(api, api_token, acme, smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(api_token(acme, Role.OWNER, name="hr-sync")).post(
            "/api/v1/account/invitations", {"email": "new@acme.test", "role": "marketer"}
        )
    assert response.status_code == 201
    assert response.json()["state"] == "pending"
    event = AuditEvent.objects.get(verb="member.invited")
    assert event.actor is None and event.actor_token.name == "hr-sync" and "hr-sync" in event.actor_label
    smtp_server.wait_for(1)


def test_validation_errors_say_what_and_where(api, api_token, acme):
    response = api(api_token(acme)).post("/api/v1/account/invitations", {"email": "not-an-email", "role": "king"})
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "validation_error"
    locations = {tuple(d["loc"]) for d in error["details"]}
    assert ("email",) in locations and ("role",) in locations
    assert "email" in error["message"]


def test_malformed_json_is_a_clear_error(api, api_token, acme, client):
    response = client.post("/api/v1/account/invitations", data="{not json", content_type="application/json",
                           headers={"Authorization": f"Bearer {api_token(acme)}"})
    assert response.status_code in (400, 422)
    _error(response)


def test_unknown_routes_answer_in_the_error_shape(api, api_token, acme):
    response = api(api_token(acme)).get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_another_accounts_ids_are_404(api, api_token, acme, globex, olivia, charlie):
    job = Job.objects.create(account=globex, kind="x", title="Globex job")
    invitation = Invitation.objects.create(account=globex, email="g@globex.test", role="analyst", key_hash="0" * 64,
                                           expires_at=timezone.now() + timedelta(days=1))
    acme_api = api(api_token(acme, Role.OWNER))
    assert acme_api.get(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert _error(acme_api.get(f"/api/v1/jobs/{job.pk}"))["code"] == "not_found"
    assert acme_api.delete(f"/api/v1/account/invitations/{invitation.pk}").status_code == 404
    assert invitation.__class__.objects.get(pk=invitation.pk).state == "pending"
    assert api(api_token(globex)).get(f"/api/v1/jobs/{job.pk}").status_code == 200


def test_lists_page_with_a_cursor(api, api_token, acme):
    Job.objects.bulk_create([Job(account=acme, kind="k", title=f"job {i}") for i in range(7)])
    client = api(api_token(acme))
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/v1/jobs?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url).json()
        seen += [j["title"] for j in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 7 and len(set(seen)) == 7
    assert seen[0] == "job 6"  # newest first
    bad = client.get("/api/v1/jobs?cursor=%%%")
    assert bad.status_code == 400 and _error(bad)["code"] == "invalid_cursor"
    assert client.get("/api/v1/jobs?limit=0").status_code == 422
    assert client.get("/api/v1/jobs?limit=5000").status_code == 422


def test_members_list_shows_only_this_account(api, api_token, acme, olivia, alice, charlie):
    body = api(api_token(acme)).get("/api/v1/account/members").json()
    assert {m["email"] for m in body["items"]} == {"olivia@acme.test", "alice@acme.test"}


# --- idempotency ----------------------------------------------------------------------------------


def test_an_idempotency_key_replays_the_first_response(api, api_token, acme, django_capture_on_commit_callbacks):
    client = api(api_token(acme))
    headers = {"Idempotency-Key": "invite-42"}
    payload = {"email": "once@acme.test", "role": "analyst"}
    with django_capture_on_commit_callbacks(execute=False):
        first = client.post("/api/v1/account/invitations", payload, headers=headers)
        second = client.post("/api/v1/account/invitations", payload, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Invitation.objects.filter(email="once@acme.test").count() == 1
    assert AuditEvent.objects.filter(verb="member.invited").count() == 1


def test_reusing_a_key_with_another_body_is_409(api, api_token, acme):
    client = api(api_token(acme))
    headers = {"Idempotency-Key": "k1"}
    client.post("/api/v1/account/invitations", {"email": "a@acme.test"}, headers=headers)
    response = client.post("/api/v1/account/invitations", {"email": "b@acme.test"}, headers=headers)
    assert response.status_code == 409
    assert _error(response)["code"] == "idempotency_key_reused"
    assert not Invitation.objects.filter(email="b@acme.test").exists()


def test_keys_are_per_account(api, api_token, acme, globex):
    payload = {"email": "same@x.test"}
    a = api(api_token(acme)).post("/api/v1/account/invitations", payload, headers={"Idempotency-Key": "shared"})
    b = api(api_token(globex)).post("/api/v1/account/invitations", payload, headers={"Idempotency-Key": "shared"})
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b
    assert Invitation.objects.filter(email="same@x.test").count() == 2


def test_a_completed_key_past_its_ttl_runs_again(api, api_token, acme, settings):
    client = api(api_token(acme))
    headers = {"Idempotency-Key": "old"}
    assert client.post("/api/v1/account/invitations", {"email": "d@acme.test"}, headers=headers).status_code == 201
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS, minutes=1))
    second = client.post("/api/v1/account/invitations", {"email": "e@acme.test"}, headers=headers)
    assert second.status_code == 201 and "Idempotent-Replayed" not in second
    assert Invitation.objects.filter(email="e@acme.test").exists()
    assert IdempotencyKey.objects.get(key="old").completed_at is not None


def test_a_revoked_token_with_an_idempotency_key_is_401_at_once(api, api_token, acme):
    from accounts.access import Actor
    from accounts.services import api_token_revoke

    raw = api_token(acme)
    client = api(raw)
    payload = {"email": "f@acme.test"}
    assert client.post("/api/v1/account/invitations", payload, headers={"Idempotency-Key": "a"}).status_code == 201
    api_token_revoke(token=ApiToken.objects.get(), actor=Actor.system())  # the process had it cached
    response = client.post("/api/v1/account/invitations", {"email": "g@acme.test"}, headers={"Idempotency-Key": "b"})
    assert response.status_code == 401
    assert not IdempotencyKey.objects.filter(key="b").exists()


def test_a_key_still_in_progress_is_409_and_a_stale_one_is_freed(api, api_token, acme):
    client = api(api_token(acme))
    IdempotencyKey.objects.create(account=acme, key="busy", request_hash="x", method="POST", path="/api/v1/account/invitations")
    response = client.post("/api/v1/account/invitations", {"email": "c@acme.test"}, headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409 and _error(response)["code"] in ("idempotency_key_in_use", "idempotency_key_reused")
    IdempotencyKey.objects.filter(key="busy").update(created_at=timezone.now() - timedelta(minutes=6))
    response = client.post("/api/v1/account/invitations", {"email": "c@acme.test"}, headers={"Idempotency-Key": "busy"})
    assert response.status_code == 201


def test_an_over_long_key_is_refused(api, api_token, acme):
    response = api(api_token(acme)).post("/api/v1/account/invitations", {"email": "d@acme.test"},
                                         headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400 and _error(response)["code"] == "invalid_idempotency_key"


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_change_state_once(acme, api_token):
    raw = api_token(acme)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        from django.db import connection

        c = Client()
        barrier.wait()
        try:
            r = c.post("/api/v1/account/invitations", data=json.dumps({"email": "race@acme.test"}), content_type="application/json",
                       headers={"Authorization": f"Bearer {raw}", "Idempotency-Key": "race"})
            results.append(r.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert Invitation.objects.filter(email="race@acme.test").count() == 1
    assert results.count(201) >= 1 and set(results) <= {201, 409}


# --- rate limit -----------------------------------------------------------------------------------


def test_it_rate_limits_per_token(api, api_token, acme, settings, mid_window):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    limited = api(api_token(acme, name="limited"))
    other = api(api_token(acme, name="other"))
    codes = [limited.get("/api/v1/account").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = limited.get("/api/v1/account")
    assert _error(response)["code"] == "rate_limited" and int(response["Retry-After"]) > 0
    assert response["X-RateLimit-Remaining"] == "0"
    assert other.get("/api/v1/account").status_code == 200


# --- documents ------------------------------------------------------------------------------------


def test_it_serves_the_openapi_document_and_docs_without_a_cdn(db, client):
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    doc = spec.json()
    assert "/api/v1/account" in doc["paths"]
    assert doc["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"cdn." not in docs.content and b"/static/ninja/" in docs.content
