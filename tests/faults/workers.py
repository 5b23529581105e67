"""Real Celery worker processes for the fault tests: started on the test database (a committed
one: the tests use `django_db(transaction=True)`), the test Redis db and the fault SMTP server,
then stopped gracefully, SIGTERM'd or kill -9'd.

A worker is `celery -A cdp worker -P solo -c 1` in its own session (so kill -9 of its process
group takes exactly it), with `DJANGO_SETTINGS_MODULE=tests.faults.worker_settings` (the project's
settings plus short back-offs and leases, see that module) and its log in a file the test prints
when something goes wrong.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def database_url(settings_dict: dict, *, host: str | None = None, port: int | None = None) -> str:
    """A DATABASE_URL for the database Django is connected to (the test database: its NAME is the
    test name once pytest-django set it up), optionally through a proxy's host and port."""
    engine = settings_dict["ENGINE"]
    if "sqlite" in engine:
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@"
    h = host or settings_dict.get("HOST") or "127.0.0.1"
    p = port or settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{h}:{p}/{settings_dict['NAME']}"


@dataclass
class Worker:
    """One worker process. `env` is complete (the caller builds it: stack.worker_env)."""

    name: str
    env: dict[str, str]
    log_path: Path
    queues: tuple[str, ...] = ("bulk", "trigger", "default")
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    _log: object = field(default=None, repr=False)

    def start(self, *, ready_timeout: float = 120.0) -> Worker:
        cmd = [sys.executable, "-m", "celery", "-A", "cdp", "worker", "-P", "solo", "-c", "1",
               "-Q", ",".join(self.queues), "-n", f"{self.name}@%h", "-l", "INFO",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "--prefetch-multiplier", "1"]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.started_at = time.monotonic()
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until the worker logged "ready" (it consumes from its queues), bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready after {timeout}s:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, *, timeout: float = 30.0) -> int | None:
        """SIGTERM: Celery's warm shutdown (finish the task in hand, then exit). Returns the exit code
        (None if it did not exit in time; it is then killed)."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """kill -9 the worker's process group: no cleanup of any kind."""
        return self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: int, timeout: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            code = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        return code

    def stop(self) -> None:
        """Whatever state it is in: gone afterwards (fixtures' teardown)."""
        if self.alive:
            self.terminate(timeout=15)
        elif self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def tasks_succeeded(self, task_name: str) -> int:
        """How many `task_name` tasks this worker logged as succeeded."""
        return sum(1 for line in self.log_text().splitlines() if task_name in line and "succeeded" in line)
