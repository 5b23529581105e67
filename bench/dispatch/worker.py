"""Imported by the benchmark's workers (`celery worker -I bench.dispatch.worker`): every result of
`mailings.services.dispatch.batch_send` (counts and phase seconds) is appended, one line a batch,
to the file named by BENCH_DISPATCH_TIMINGS, which the benchmark sums at the end. The tasks look
`batch_send` up on the module at call time, so wrapping the module attribute is enough; nothing
else changes in the worker."""

from __future__ import annotations

import functools
import json
import os
from typing import Any


def _install(path: str) -> None:
    from mailings.services import dispatch

    original = dispatch.batch_send
    if getattr(original, "_bench_wrapped", False):
        return

    @functools.wraps(original)
    def batch_send(*, run_id: int, ids: list[int]) -> dict[str, Any]:
        result = original(run_id=run_id, ids=ids)
        with open(path, "a") as out:
            out.write(f"batch of run {run_id}: {json.dumps(result, default=str)}\n")
        return result

    batch_send._bench_wrapped = True  # type: ignore[attr-defined]
    dispatch.batch_send = batch_send


def _before_task(**_: Any) -> None:
    # At the first task Django is set up (the tasks import the dispatch at call time, after this).
    path = os.environ.get("BENCH_DISPATCH_TIMINGS")
    if path:
        _install(path)


from celery.signals import task_prerun  # noqa: E402 (the signal is all this module needs)

task_prerun.connect(_before_task, weak=False)
