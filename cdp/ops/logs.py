"""Log context (request id, Celery task id and name) and the JSON log format.

The ids live in contextvars: the request middleware sets the request id for the duration of a
request, the Celery task_prerun/task_postrun hooks set the task's id and name for the duration
of a task. `ContextFilter` copies them onto every record (so the text format can show them too),
`JsonFormatter` writes one JSON object a line. `logging_config()` is what settings.LOGGING is.

This module is imported by settings.py: it must not import Django models or settings.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("cdp_request_id", default="")
job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("cdp_job_id", default="")
job_name_var: contextvars.ContextVar[str] = contextvars.ContextVar("cdp_job_name", default="")

# The attributes every LogRecord has; anything else a caller passed in `extra=` goes into the JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_OURS = {"request_id", "job_id", "job_name"}


@contextmanager
def log_context(*, request_id: str | None = None, job_id: str | None = None,
                job_name: str | None = None) -> Iterator[None]:
    """Set the given ids for the duration of the block (the others are left as they are)."""
    tokens = []
    for var, value in ((request_id_var, request_id), (job_id_var, job_id), (job_name_var, job_name)):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds `request_id`, `job_id` and `job_name` (empty when none) to every record it sees.
    Never drops a record. A value the caller set explicitly (extra=) wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id_var), ("job_id", job_id_var), ("job_name", job_name_var)):
            if not getattr(record, name, ""):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC, ISO 8601), level, logger, message, request_id, job_id,
    job (the task name), process, the `extra=` fields, and exc (the traceback) when there is one.
    Values that are not JSON types are written with str()."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, name in (("request_id", "request_id"), ("job_id", "job_id"), ("job", "job_name")):
            value = getattr(record, name, "") or ""
            if value:
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _OURS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def logging_config(*, fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """The LOGGING dict: everything to stderr through one handler, in `fmt` ("text": the human
    format of `make run`, with the request or job id when there is one; "json": JsonFormatter).
    Raises ValueError for another format, so a typo in LOG_FORMAT fails at start-up."""
    if fmt not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT must be 'text' or 'json', not {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "cdp.ops.logs.ContextFilter"}},
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s",
                     "()": "cdp.ops.logs.TextFormatter"},
            "json": {"()": "cdp.ops.logs.JsonFormatter"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }


class TextFormatter(logging.Formatter):
    """The human format, with ` [req <id>]` or ` [job <name> <id>]` after the logger name."""

    def format(self, record: logging.LogRecord) -> str:
        ids = ""
        if getattr(record, "request_id", ""):
            ids += f" [req {record.request_id}]"
        if getattr(record, "job_id", ""):
            ids += f" [job {getattr(record, 'job_name', '')} {record.job_id}]"
        record.ids = ids
        return super().format(record)
