"""Calling the API in-process for schemathesis cases: the Django WSGI app, the OpenAPI document
the app serves, and the checks every fuzzed answer must pass.

The requests go through Django's real WSGIHandler (all middleware, the URLconf, django-ninja),
in the test's thread and database transaction. Django closes "old" database connections at the
start and end of every request; inside a test transaction that would close the test's own
connection, so `in_process_requests()` disconnects those two receivers for its duration, as
Django's own test client does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

OPENAPI_PATH = "/api/v1/openapi.json"

# What every answer must satisfy: no 5xx, a documented status code, the documented media type,
# documented headers, and a body matching the documented schema for its status.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@cache
def wsgi_app() -> WSGIHandler:
    return WSGIHandler()


@cache
def openapi_document() -> dict[str, Any]:
    """The document django-ninja builds for /api/v1/ (no request, no database: usable at
    collection time). `test_it_serves_the_document_the_fuzzer_reads` proves it is the one served."""
    from cdp.api.v1 import api

    return api.get_openapi_schema(path_prefix="/api/v1/")


@cache
def api_schema() -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(openapi_document())
    schema.app = wsgi_app()
    return schema


def operations() -> list[tuple[str, str]]:
    """Every (METHOD, path) of the document, in document order."""
    return [(method.upper(), path) for path, ops in openapi_document()["paths"].items() for method in ops]


def path_parameters(path: str) -> list[str]:
    """The names of the path's `{parameters}`, in order."""
    import re

    return re.findall(r"{([^}]+)}", path)


def schema_classes() -> dict[str, set[str]]:
    """Schema class name -> the classes ("module.qualname") of that name that the API's
    operations use for bodies, parameters and answers, nested ones included."""
    import inspect
    import typing

    import pydantic

    from cdp.api.v1 import api

    names: dict[str, set[str]] = {}
    visited: set[int] = set()

    def walk(tp: Any) -> None:
        if id(tp) in visited:
            return
        visited.add(id(tp))
        if inspect.isclass(tp) and issubclass(tp, pydantic.BaseModel):
            if not tp.__module__.startswith("ninja"):  # ninja's per-operation wrappers are not components
                names.setdefault(tp.__name__, set()).add(f"{tp.__module__}.{tp.__qualname__}")
            for info in tp.model_fields.values():
                walk(info.annotation)
        else:
            for arg in typing.get_args(tp):
                walk(arg)

    for _prefix, router in api._routers:
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                for model in operation.models or []:
                    walk(model)
                for model in (getattr(operation, "response_models", None) or {}).values():
                    walk(model)
    return names


@contextmanager
def in_process_requests() -> Iterator[None]:
    """Let WSGI requests run inside the test's transaction (see the module docstring)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
