"""Schemathesis fuzzing of every operation of /api/v1/openapi.json, in-process, with two accounts.

Two accounts, acme and globex, each get one of everything the API can name (tests/fuzz/world.py)
and an owner token. For every operation of the document, schemathesis generates requests from
the schema (valid ones and invalid ones, drawn from both); each generated request is sent with
acme's token

1. as generated (random ids, slugs, bodies and query strings),
2. with the path parameters set to acme's own objects (so the fuzzed body and query reach the
   handler's logic instead of stopping at a 404), and
3. with the path parameters set to globex's objects,

and the answers must satisfy:

- (1) and (2): no 5xx, a documented status code, the documented content type and headers, and a
  body matching the documented schema for that status (tests/fuzz/harness.py CHECKS); and no
  answer to acme's token contains the marker every globex object carries in its names ("globex");
- (3): the same schema checks, and 404, or, when the request is refused before any lookup (a 422
  for an invalid body), the very answer the same request gets for ids that exist nowhere: nothing
  tells that globex's object exists.

Defects the fuzzer found that are not fixed yet are in KNOWN_DEFECTS (expected failures, with
where the fix belongs); the document itself is checked too: it is the one served, and no two
schema classes share a component name.

Example counts are bounded (FUZZ_EXAMPLES per operation, derandomized: the same examples on
every run) so the whole module runs in a few minutes on two cores. CDP_FUZZ_EXAMPLES raises
them for a longer local run.

Operations skipped: none (SKIPPED below names any with the reason). The e-mail an operation may
send (template test-send, mailing launch, trigger) goes to the in-memory backend of conftest.py,
and the DNS lookups of domain verification to a fake resolver: nothing leaves the process.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.fuzz import fixtures
from tests.fuzz.harness import (
    CHECKS,
    OPENAPI_PATH,
    api_schema,
    bearer,
    in_process_requests,
    openapi_document,
    operations,
    path_parameters,
    schema_classes,
)

# The shared fixtures (acme and globex built once per module; see tests/fuzz/fixtures.py).
fuzz_tenants = fixtures.fuzz_tenants
tenants = fixtures.tenants

FUZZ_EXAMPLES = int(os.environ.get("CDP_FUZZ_EXAMPLES", "6"))

# (METHOD, path) -> why it is not fuzzed. Keep empty unless an operation cannot run in-process.
SKIPPED: dict[tuple[str, str], str] = {}

# (METHOD, path) -> a defect the fuzzer found that is not fixed yet (expected to fail, not
# strictly: some depend on the database). Remove the entry with the fix.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}

# Values that name nothing in any account, per path parameter type.
MISSING_INT = 2_000_000_000
MISSING_STR = "zz-missing-object"

LEAK_MARKER = b"globex"


def _op_id(op: tuple[str, str]) -> str:
    return f"{op[0]} {op[1].removeprefix('/api/v1')}"


FUZZED = [
    pytest.param(op, marks=pytest.mark.xfail(reason=KNOWN_DEFECTS[op], strict=False)) if op in KNOWN_DEFECTS else op
    for op in operations() if op not in SKIPPED
]


def _missing_values(operation: Any) -> dict[str, Any]:
    """Path parameter values that exist nowhere, typed as the document declares them."""
    values = {}
    for param in operation.path_parameters:
        definition = param.definition.get("schema", {})
        values[param.name] = MISSING_INT if definition.get("type") == "integer" else MISSING_STR
    return values


def _describe(case: Any, response: Any) -> str:
    body = response.content[:600].decode("utf-8", "replace")
    sent = case.body if not isinstance(case.body, bytes) else case.body[:200]
    return (f"{case.method} {case.formatted_path} query={case.query!r} body={json.dumps(sent, default=str)[:400]}"
            f" -> {response.status_code} {body}")


def _check(case: Any, response: Any, headers: dict[str, str]) -> None:
    case.validate_response(response, checks=CHECKS, headers=headers)
    assert LEAK_MARKER not in response.content.lower(), f"globex data in an answer to acme: {_describe(case, response)}"


def test_it_serves_the_document_the_fuzzer_reads(client):
    """The fuzzer reads django-ninja's document without a request (it must exist at collection
    time); this proves it is the document the API serves."""
    response = client.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(openapi_document()))


def test_it_fuzzes_every_operation():
    """Nothing is left out silently: every operation is fuzzed or skipped with a reason."""
    assert len(FUZZED) + len(SKIPPED) == len(operations()) > 0
    assert all(reason.strip() for reason in SKIPPED.values())
    assert set(SKIPPED) | set(KNOWN_DEFECTS) <= set(operations()), "an operation the API no longer has is listed"


def test_it_names_every_schema_once():
    """django-ninja names a schema's OpenAPI component after its class; two classes of one name
    (in different apps) silently share one component, and the document then describes one
    operation's answer with the other's schema. Every schema class name must be unique."""
    names = schema_classes()
    shared = {name: sorted(classes) for name, classes in names.items() if len(classes) > 1}
    assert names, "no schema classes found: the walk over the API's operations is broken"
    assert not shared, f"schema classes sharing an OpenAPI component name (rename one): {shared}"


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/api/v1/no-such-endpoint", "/api/v1/databases/a%0Ab/profiles",
                                  "/api/v1/databases/%2C%20/fields"])
def test_it_answers_unknown_api_paths_in_the_error_shape(method, path, tenants, client):
    """Found by the fuzzer: a POST to an unknown API path (a slug parameter that is no slug
    included) answered Django's HTML CSRF page, and a path with a newline Django's HTML 404."""
    acme, _ = tenants
    response = client.generic(method, path, data="{}", content_type="application/json", headers=bearer(acme.token))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("op", FUZZED, ids=_op_id)
def test_it_answers_fuzzed_requests_within_the_schema(op, tenants):
    """Generated requests for one operation: see the module docstring for what each must satisfy."""
    method, path = op
    own, other = tenants
    operation = api_schema()[path][method]
    names = path_parameters(path)
    headers = bearer(own.token)
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate, Phase.shrink],
                         suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        _check(case, response, headers)
        if not names:
            return
        foreign_case = case.derive()
        foreign_case.path_parameters = {name: other.path_value(path, name) for name in names}
        foreign = foreign_case.call(headers=headers)
        foreign_case.validate_response(foreign, checks=CHECKS, headers=headers)
        if foreign.status_code != 404:
            missing_case = case.derive()
            missing_case.path_parameters = _missing_values(operation)
            missing = missing_case.call(headers=headers)
            assert (foreign.status_code, foreign.content) == (missing.status_code, missing.content), (
                "acme's token on globex's object is answered differently from a missing object:\n"
                f"  globex's: {_describe(foreign_case, foreign)}\n  missing:  {_describe(missing_case, missing)}"
            )
            assert foreign.status_code not in range(200, 300)
        own_case = case.derive()
        own_case.path_parameters = {name: own.path_value(path, name) for name in names}
        _check(own_case, own_case.call(headers=headers), headers)

    with in_process_requests():
        run()
