"""Every API operation that names an object is a 404 for another account's token.

The walker reads the OpenAPI document the API serves (/api/v1/openapi.json), not the URLconf:
so it sees every method of every path (PATCH and PUT too, which the page walker in
tests/test_tenant_isolation.py does not try). An operation with a path parameter must be listed
in OBJECT_OPERATIONS (how to name account A's object, and a valid body where the operation
needs one, so the request passes validation and reaches the lookup) or in NOT_TENANT_OPERATIONS
(why it names no tenant object). A new operation in neither fails
`test_it_covers_every_operation_with_a_path_parameter`.

For each listed operation, charlie's account (globex) sends the request for acme's object with
the operation's method and must get 404; acme's own token must not get 404 (so the check can
fail). Operations that name another object in their body or query (a mailing's template, an
event's profile, a segment's members...) are in BODY_REFERENCES: acme's token naming globex's
object there must be refused exactly as a value that exists nowhere is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fuzz import fixtures
from tests.fuzz.harness import bearer, operations, path_parameters
from tests.fuzz.world import Tenant

fuzz_tenants = fixtures.fuzz_tenants
tenants = fixtures.tenants

Values = Callable[[Tenant], dict[str, Any]]


def _no_body(t: Tenant) -> None:
    return None


@dataclass(frozen=True)
class Obj:
    """How to name tenant `t`'s object: `params(t)` the path parameters, `body(t)` the JSON
    body (None: none sent), `query(t)` the query string."""

    params: Values
    body: Callable[[Tenant], Any] = _no_body
    query: Values = field(default=lambda t: {})


def _db(t: Tenant) -> dict[str, Any]:
    return {"db": t.database.slug}


def _profile(t: Tenant) -> dict[str, Any]:
    return {"db": t.database.slug, "profile_id": t.profile.pk}


def _subscription(t: Tenant) -> dict[str, Any]:
    return {**_profile(t), "subscription_id": t.subscription.pk}


def _segment(t: Tenant) -> dict[str, Any]:
    return {"segment_id": t.segment.pk}


def _template(t: Tenant) -> dict[str, Any]:
    return {"template_id": t.template.pk}


def _mailing(t: Tenant) -> dict[str, Any]:
    return {"mailing_id": t.mailing.pk}


def _trigger(t: Tenant) -> dict[str, Any]:
    return {"mailing_id": t.trigger.pk}


def _scenario(t: Tenant) -> dict[str, Any]:
    return {"scenario_id": t.scenario.pk}


def _resource(t: Tenant) -> dict[str, Any]:
    return {"resource": t.resource.slug}


def _empty(t: Tenant) -> dict[str, Any]:
    return {}


# "METHOD /path" (the path as the document names it, without /api/v1) -> account A's object.
# Extend as apps add operations.
OBJECT_OPERATIONS: dict[str, Obj] = {
    # accounts
    "DELETE /account/invitations/{invitation_id}": Obj(lambda t: {"invitation_id": t.invitation.pk}),
    "GET /jobs/{job_id}": Obj(lambda t: {"job_id": t.job.pk}),
    # profiles
    "GET /databases/{db}": Obj(_db),
    "PATCH /databases/{db}": Obj(_db, _empty),
    "DELETE /databases/{db}": Obj(_db),
    "GET /databases/{db}/fields": Obj(_db),
    "POST /databases/{db}/fields": Obj(_db, lambda t: {"name": "loyalty"}),
    "PATCH /databases/{db}/fields": Obj(_db, lambda t: {"order": [t.field]}),
    "PATCH /databases/{db}/fields/{name}": Obj(lambda t: {**_db(t), "name": t.field}, lambda t: {"label": "Level"}),
    "DELETE /databases/{db}/fields/{name}": Obj(lambda t: {**_db(t), "name": t.field}),
    "GET /databases/{db}/profiles": Obj(_db),
    "POST /databases/{db}/profiles": Obj(_db, lambda t: {"fields": {"email": "new@example.com"}}),
    "POST /databases/{db}/profiles/batch": Obj(_db, lambda t: {"items": [{"email": "new@example.com"}]}),
    "GET /databases/{db}/profiles/lookup": Obj(_db, query=lambda t: {"email": t.profile.email}),
    "POST /databases/{db}/profiles/merge": Obj(_db, lambda t: {"target": t.profile.pk, "source": t.other_profile.pk}),
    "GET /databases/{db}/profiles/{profile_id}": Obj(_profile),
    "PATCH /databases/{db}/profiles/{profile_id}": Obj(_profile, lambda t: {"fields": {"first_name": "Ann"}}),
    "DELETE /databases/{db}/profiles/{profile_id}": Obj(_profile),
    # resources, subscriptions, consent, suppressions
    "GET /resources/{resource}": Obj(_resource),
    "PATCH /resources/{resource}": Obj(_resource, _empty),
    "DELETE /resources/{resource}": Obj(_resource),
    "POST /resources/{resource}/rotate-key": Obj(_resource),
    "POST /resources/{resource}/subscribe": Obj(_resource, lambda t: {"profile": {"email": "new@example.com"},
                                                                     "channel": "email"}),
    "GET /databases/{db}/profiles/{profile_id}/subscriptions": Obj(_profile),
    "POST /databases/{db}/profiles/{profile_id}/subscriptions": Obj(_profile, lambda t: {"resource": t.resource.slug,
                                                                                         "channel": "sms",
                                                                                         "address": "+4915112345678"}),
    "PATCH /databases/{db}/profiles/{profile_id}/subscriptions/{subscription_id}": Obj(
        _subscription, lambda t: {"status": "unsubscribed"}),
    "DELETE /databases/{db}/profiles/{profile_id}/subscriptions/{subscription_id}": Obj(_subscription),
    "GET /databases/{db}/profiles/{profile_id}/consent": Obj(_profile),
    "DELETE /suppressions/{suppression_id}": Obj(lambda t: {"suppression_id": t.suppression.pk}),
    # history
    "GET /databases/{db}/profiles/{profile_id}/events": Obj(_profile),
    "GET /event-types/{name}": Obj(lambda t: {"name": t.event_type.name}),
    "PATCH /event-types/{name}": Obj(lambda t: {"name": t.event_type.name}, lambda t: {"label": "Renamed"}),
    "DELETE /event-types/{name}": Obj(lambda t: {"name": t.event_type.name}),
    # segments
    "GET /databases/{db}/segments": Obj(_db),
    "POST /databases/{db}/segments": Obj(_db, lambda t: {"name": "New list", "kind": "static"}),
    "POST /databases/{db}/segments/count": Obj(_db, lambda t: {"conditions": {"type": "group", "op": "and",
                                                                              "items": []}}),
    "GET /segments/{segment_id}": Obj(_segment),
    "PATCH /segments/{segment_id}": Obj(_segment, lambda t: {"description": "changed"}),
    "DELETE /segments/{segment_id}": Obj(_segment),
    "POST /segments/{segment_id}/count": Obj(_segment),
    "POST /segments/{segment_id}/recalculate": Obj(_segment),
    "GET /segments/{segment_id}/members": Obj(_segment),
    "POST /segments/{segment_id}/members": Obj(_segment, lambda t: {"profile_ids": [t.other_profile.pk]}),
    "DELETE /segments/{segment_id}/members": Obj(_segment, lambda t: {"profile_ids": [t.profile.pk]}),
    "GET /segments/{segment_id}/explain": Obj(_segment, query=lambda t: {"profile": t.profile.pk}),
    "GET /segments/{segment_id}/runs": Obj(_segment),
    # content: the render is the API's preview
    "GET /templates/{template_id}": Obj(_template),
    "PATCH /templates/{template_id}": Obj(_template, lambda t: {"description": "changed"}),
    "POST /templates/{template_id}/render": Obj(_template, lambda t: {"channel": "email"}),
    "POST /templates/{template_id}/test-send": Obj(_template, lambda t: {"channel": "email",
                                                                         "address": "qa@example.com"}),
    # delivery
    "GET /sending-domains/{domain_id}": Obj(lambda t: {"domain_id": t.domain.pk}),
    "POST /sending-domains/{domain_id}/verify": Obj(lambda t: {"domain_id": t.domain.pk}),
    # mailings: preview, report and recipients are the API's preview and exports
    "GET /mailings/{mailing_id}": Obj(_mailing),
    "PATCH /mailings/{mailing_id}": Obj(_mailing, lambda t: {"description": "changed"}),
    "POST /mailings/{mailing_id}/launch": Obj(_mailing),
    "POST /mailings/{mailing_id}/pause": Obj(_mailing),
    "POST /mailings/{mailing_id}/resume": Obj(_mailing),
    "POST /mailings/{mailing_id}/cancel": Obj(_mailing),
    "GET /mailings/{mailing_id}/preview": Obj(_mailing),
    "GET /mailings/{mailing_id}/report": Obj(_mailing),
    "GET /mailings/{mailing_id}/recipients": Obj(_mailing),
    "POST /mailings/{mailing_id}/trigger": Obj(_trigger, lambda t: {"profile": {"email": t.profile.email}}),
    "POST /mailings/{mailing_id}/trigger/bulk": Obj(_trigger, lambda t: {"items": [{"profile": {"email":
                                                                                                t.profile.email}}]}),
    # scenarios: export is the API's download
    "GET /scenarios/{scenario_id}": Obj(_scenario),
    "PATCH /scenarios/{scenario_id}": Obj(_scenario, lambda t: {"description": "changed"}),
    "DELETE /scenarios/{scenario_id}": Obj(_scenario),
    "POST /scenarios/{scenario_id}/activate": Obj(_scenario, _empty),
    "POST /scenarios/{scenario_id}/pause": Obj(_scenario),
    "POST /scenarios/{scenario_id}/resume": Obj(_scenario),
    "POST /scenarios/{scenario_id}/stop": Obj(_scenario),
    "POST /scenarios/{scenario_id}/enter": Obj(_scenario, lambda t: {"profile": {"email": t.profile.email}}),
    "GET /scenarios/{scenario_id}/participants": Obj(_scenario),
    "GET /scenarios/{scenario_id}/report": Obj(_scenario),
    "GET /scenarios/{scenario_id}/export": Obj(_scenario),
}

# Operations with path parameters that name no tenant object, and why.
NOT_TENANT_OPERATIONS: dict[str, str] = {}


@dataclass(frozen=True)
class Ref:
    """An operation that names another object in its body or query: `request(t, ref)` is the
    (path parameters, body, query) of a valid request by acme whose reference is `ref(t)`."""

    request: Callable[[Tenant, Any], tuple[dict[str, Any], Any, dict[str, Any]]]
    ref: Callable[[Tenant], Any]
    missing: Any


def _body(body: Callable[[Any], Any], params: Values = _empty) -> Callable[[Tenant, Any], tuple]:
    return lambda t, ref: (params(t), body(ref), {})


# "METHOD /path" -> a request of acme whose body names another object (acme's own by default,
# globex's in the test). The reference of the own tenant must be accepted (not a 404/422).
BODY_REFERENCES: dict[str, Ref] = {
    "POST /resources": Ref(_body(lambda db: {"database": db, "name": "Promo", "channels": ["email"]}),
                           lambda t: t.database.slug, "zz-missing"),
    "POST /templates": Ref(_body(lambda db: {"name": "Promo", "database": db}), lambda t: t.database.slug,
                           "zz-missing"),
    "POST /scenarios": Ref(_body(lambda db: {"name": "Promo", "database": db}), lambda t: t.database.slug,
                           "zz-missing"),
    "POST /events": Ref(lambda t, pid: ({}, {"event": t.event_type.name, "profile": {"id": pid}}, {}),
                        lambda t: t.profile.pk, 2_000_000_000),
    "POST /databases/{db}/segments/count": Ref(
        _body(lambda sid: {"conditions": {"type": "group", "op": "and",
                                          "items": [{"type": "segment", "segment": sid}]}}, _db),
        lambda t: t.segment.pk, 2_000_000_000),
    "POST /segments/{segment_id}/members": Ref(_body(lambda pid: {"profile_ids": [pid]}, _segment),
                                               lambda t: t.other_profile.pk, 2_000_000_000),
    "POST /templates/{template_id}/render": Ref(_body(lambda pid: {"channel": "email", "profile_id": pid}, _template),
                                                lambda t: t.profile.pk, 2_000_000_000),
    "PATCH /mailings/{mailing_id}": Ref(_body(lambda tid: {"template": tid}, _mailing), lambda t: t.template.pk,
                                        2_000_000_000),
    "POST /mailings/{mailing_id}/trigger": Ref(_body(lambda pid: {"profile": {"id": pid}}, _trigger),
                                               lambda t: t.profile.pk, 2_000_000_000),
    "POST /scenarios/{scenario_id}/enter": Ref(_body(lambda pid: {"profile": {"id": pid}}, _scenario),
                                               lambda t: t.other_profile.pk, 2_000_000_000),  # profile: been there
}


def _key(method: str, path: str) -> str:
    return f"{method} {path.removeprefix('/api/v1')}"


ALL_OPERATIONS = [_key(m, p) for m, p in operations()]
WITH_PARAMETERS = [_key(m, p) for m, p in operations() if path_parameters(p)]


def _url(key: str, params: dict[str, Any]) -> tuple[str, str]:
    method, path = key.split(" ", 1)
    missing = set(path_parameters(path)) - set(params)
    assert not missing, f"{key}: OBJECT_OPERATIONS gives no value for {sorted(missing)}"
    for name, value in params.items():
        path = path.replace("{" + name + "}", str(value))
    return method, "/api/v1" + path


def _send(client, key: str, params: dict[str, Any], body: Any, query: dict[str, Any], token: str):
    from urllib.parse import urlencode

    method, url = _url(key, params)
    if query:
        url += "?" + urlencode(query)
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if body is not None:
        kwargs.update(data=json.dumps(body), content_type="application/json")
    return client.generic(method, url, **kwargs)


def test_it_covers_every_operation_with_a_path_parameter():
    uncovered = [k for k in WITH_PARAMETERS if k not in OBJECT_OPERATIONS and k not in NOT_TENANT_OPERATIONS]
    assert not uncovered, (
        "API operations with path parameters missing from the API isolation walker; add them to "
        f"OBJECT_OPERATIONS (or NOT_TENANT_OPERATIONS with the reason): {uncovered}"
    )
    stale = (set(OBJECT_OPERATIONS) | set(NOT_TENANT_OPERATIONS) | set(BODY_REFERENCES)) - set(ALL_OPERATIONS)
    assert not stale, f"the walker names operations the API no longer has: {sorted(stale)}"
    assert all(reason.strip() for reason in NOT_TENANT_OPERATIONS.values())


@pytest.mark.parametrize("key", sorted(OBJECT_OPERATIONS))
def test_it_answers_404_to_another_accounts_token(key, tenants, client):
    acme, globex = tenants
    spec = OBJECT_OPERATIONS[key]
    # The body and query are acme's own valid ones: validation passes and the lookup decides.
    request = (spec.params(acme), spec.body(acme), spec.query(acme))
    outsider = _send(client, key, *request, token=globex.token)
    assert outsider.status_code == 404, (
        f"{key} for acme's object with globex's token answered {outsider.status_code}: {outsider.content[:300]!r}")
    assert outsider.json()["error"]["code"] == "not_found"
    # The owner reaches it: without this, a broken route would pass as "isolated".
    insider = _send(client, key, *request, token=acme.token)
    assert insider.status_code not in (404, 422), (
        f"{key} for acme's object with acme's token answered {insider.status_code}: {insider.content[:300]!r}")


def _normalized(response, ref: Any) -> tuple[int, Any]:
    """(status, JSON body) with the referenced value replaced by a placeholder wherever it is a
    whole JSON value or a word of a string: answers for two references compare equal when they
    differ only in echoing the reference."""
    import re

    word = re.compile(rf"(?<![\w-]){re.escape(str(ref))}(?![\w-])")

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return word.sub("<ref>", value)
        return "<ref>" if value == ref and not isinstance(value, bool) else value

    try:
        body = response.json()
    except ValueError:
        body = response.content
    return response.status_code, walk(body)


@pytest.mark.parametrize("key", sorted(BODY_REFERENCES))
def test_it_refuses_another_accounts_object_in_a_body_like_a_missing_one(key, tenants, client):
    acme, globex = tenants
    ref = BODY_REFERENCES[key]
    foreign = _send(client, key, *ref.request(acme, ref.ref(globex)), token=acme.token)
    missing = _send(client, key, *ref.request(acme, ref.missing), token=acme.token)
    assert _normalized(foreign, ref.ref(globex)) == _normalized(missing, ref.missing), (
        f"{key}: globex's object is answered differently from a missing one:\n"
        f"  globex's: {foreign.status_code} {foreign.content[:300]!r}\n  missing:  {missing.status_code} "
        f"{missing.content[:300]!r}")
    # A missing reference must be refused (or reported as unknown) for this to prove anything,
    # and acme's own object must be accepted where globex's was not.
    own = _send(client, key, *ref.request(acme, ref.ref(acme)), token=acme.token)
    assert own.status_code < 400, f"{key} naming acme's own object answered {own.status_code}: {own.content[:300]!r}"
    assert _normalized(own, ref.ref(acme)) != _normalized(foreign, ref.ref(globex)), (
        f"{key}: acme's own object and globex's are answered alike, so the check proves nothing")
