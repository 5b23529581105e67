"""Structured logs: a request's lines carry its request id, a task's lines its task id and name,
through the handler that settings.LOGGING configures (its filter and, here, the JSON format)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from cdp.celery import app as celery_app
from cdp.ops.logs import JsonFormatter, logging_config

log = logging.getLogger("tests.ops")


@celery_app.task(name="tests.ops.log_twice")
def log_twice(word: str) -> str:
    log.info("first %s", word)
    log.warning("second %s", word, extra={"profile_count": 3})
    return word


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict]]]:
    """json_lines() -> what the configured console handler (settings.LOGGING, with its context
    filter) has written so far in this test, in the JSON format, one dict a line."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    stream, formatter = io.StringIO(), handler.formatter
    old_stream = handler.setStream(stream)
    handler.setFormatter(JsonFormatter())
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(formatter)


def test_it_tags_every_log_line_of_a_request_with_its_id(client, db, json_lines):
    first = client.get("/no-such-page-1", headers={"X-Request-ID": "lb-4f2a9c1e-0001"})
    second = client.get("/no-such-page-2")
    assert first.status_code == 404 and first["X-Request-ID"] == "lb-4f2a9c1e-0001"
    assert len(second["X-Request-ID"]) == 32 and second["X-Request-ID"] != first["X-Request-ID"]
    lines = json_lines()
    by_path = {line["message"]: line for line in lines if line["logger"] == "django.request"}
    assert by_path["Not Found: /no-such-page-1"]["request_id"] == "lb-4f2a9c1e-0001"
    assert by_path["Not Found: /no-such-page-2"]["request_id"] == second["X-Request-ID"]
    assert all(line["level"] in ("WARNING", "INFO", "ERROR") and line["ts"].endswith("+00:00") for line in lines)


@pytest.mark.parametrize("incoming", ["short", "has space in it 123", 'quote"injection-123', "x" * 200])
def test_it_replaces_a_request_id_that_does_not_look_like_one(client, db, incoming):
    response = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert response["X-Request-ID"] != incoming and len(response["X-Request-ID"]) == 32


def test_it_tags_a_tasks_log_lines_with_its_task_id_and_name(db, json_lines):
    result = log_twice.delay("hello")  # eager: the same prerun/postrun signals as a worker
    log.info("after the task")
    mine = [line for line in json_lines() if line["logger"] == "tests.ops"]
    assert [line["message"] for line in mine] == ["first hello", "second hello", "after the task"]
    assert {line.get("job_id") for line in mine[:2]} == {result.id}
    assert {line.get("job") for line in mine[:2]} == {"tests.ops.log_twice"}
    assert mine[1]["profile_count"] == 3
    assert "job_id" not in mine[2]  # the context is gone after the task


def test_it_keeps_the_human_format_by_default_and_refuses_an_unknown_one():
    assert logging_config()["handlers"]["console"]["formatter"] == "text"
    assert logging_config(fmt="json")["handlers"]["console"]["formatter"] == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(fmt="xml")


def test_it_writes_the_traceback_of_an_exception_into_the_json_line():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "boom now" and "RuntimeError: kaput" in line["exc"]
