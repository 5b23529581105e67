"""A real Celery worker process writes its heartbeat (so /readyz sees its queues), logs in JSON
when LOG_FORMAT=json, and removes its heartbeat when it shuts down cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdp.ops import beacons

pytestmark = pytest.mark.celery_worker
ROOT = Path(__file__).resolve().parent.parent


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_it_sees_a_real_worker_by_its_heartbeat_and_forgets_it_at_shutdown(client, db, settings, tmp_path):
    settings.OPS_BEACON_DIR = str(tmp_path / "ops")
    settings.OPS_HEARTBEAT_SECONDS = 0.5
    beacons.clear("worker")
    hostname = f"ops-test-{os.getpid()}@localhost"
    env = {**os.environ, "OPS_BEACON_DIR": settings.OPS_BEACON_DIR, "OPS_HEARTBEAT_SECONDS": "0.5",
           "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cdp", "worker", "-Q", "trigger,scenarios", "-P", "solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", hostname, "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert _wait(lambda: hostname in beacons.workers(), 60), log_path.read_text()[-3000:]
            record = beacons.workers()[hostname]
            assert record["queues"] == ["scenarios", "trigger"] and record["pid"] == worker.pid
            first = record["at"]
            assert _wait(lambda: beacons.workers().get(hostname, {}).get("at", 0) > first, 10)  # it keeps beating
            body = client.get("/readyz").json()
            assert body["checks"]["workers"]["queues_without_worker"] == ["default", "bulk"]
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    assert hostname not in beacons.workers()  # removed at shutdown, not left to expire
    lines = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(r["logger"].startswith("celery") for r in records), log_path.read_text()[-3000:]
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    if not settings.REDIS_URL:  # the embedded store is plain files under OPS_BEACON_DIR
        assert (Path(settings.OPS_BEACON_DIR) / "worker").is_dir()
