"""The fault-test harness (RELIABILITY.md, "Fault tests"): real Celery worker processes on the
committed test database, the fault SMTP server, TCP proxies in front of Redis (for the test
process, which plays the web process and the beat) and PostgreSQL (for workers that must lose
their database); the `faults` marker is registered in pyproject.toml.

    @pytest.mark.faults
    @pytest.mark.django_db(transaction=True)
    def test_it_...(stack, world):
        stack.start_worker()
        mailing = broadcast(world)
        run = wait_for_run(mailing)
        drain(run)
        check_invariants(run, stack.smtp)

The test process publishes through `stack.redis_proxy` (Celery's producer pool is pointed at it),
so `stack.redis_proxy.down()` is "Redis is down" for the web side while workers keep their own
connection. Without REDIS_URL (SQLite and the filesystem broker) the Redis faults are skipped;
without PostgreSQL the database restart is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faults.servers import FaultSmtp, TcpProxy
from tests.faults.workers import Worker, database_url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fault tests take minutes (real processes, real waits): a plain `pytest` leaves them out,
    `make test` runs them as a second step (`make test-faults`). They run when asked for: `-m
    faults`, or a path inside tests/faults."""
    asked = "faults" in (config.option.markexpr or "") or any(
        "tests/faults" in str(arg) or str(arg).rstrip("/").endswith("faults") for arg in config.args)
    if asked:
        return
    kept = [item for item in items if item.get_closest_marker("faults") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("faults")])
        items[:] = kept


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@dataclass
class Stack:
    """What a fault test runs against (see the module docstring)."""

    smtp: FaultSmtp
    tmp: Path
    db: dict[str, Any]
    redis_url: str  # the test Redis db, direct ("" without Redis)
    var_dir: Path
    secret_key: str
    redis_proxy: TcpProxy | None = None
    pg_proxy: TcpProxy | None = None
    workers: list[Worker] = field(default_factory=list)
    # The test process's MEDIA_ROOT (the root conftest points it at tmp_path): workers read the
    # uploads it saved (imports) and write files it serves (exports) there too.
    media_root: Path | None = None

    @property
    def postgres(self) -> bool:
        return "postgresql" in self.db["ENGINE"]

    def worker_env(self, *, via_pg_proxy: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        if via_pg_proxy:
            if self.pg_proxy is None:
                self.pg_proxy = TcpProxy(self.db.get("HOST") or "127.0.0.1", int(self.db.get("PORT") or 5432)).up()
            url = database_url(self.db, host="127.0.0.1", port=self.pg_proxy.port)
        else:
            url = database_url(self.db)
        env.update({
            "DJANGO_SETTINGS_MODULE": "tests.faults.worker_settings",
            "DATABASE_URL": url,
            "REDIS_URL": self.redis_url,
            "CDP_VAR_DIR": str(self.var_dir),
            "SECRET_KEY": self.secret_key,
            "DELIVERY_BACKEND": "smtp",
            "EMAIL_URL": f"smtp://{self.smtp.host}:{self.smtp.port}",
            "DELIVERY_ALLOW_PRIVATE_HOSTS": "1",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "DB_CONN_MAX_AGE": "0" if via_pg_proxy else "60",
            "PYTHONUNBUFFERED": "1",
        })
        if self.media_root is not None:
            env["MEDIA_ROOT"] = str(self.media_root)
        if not self.redis_url:
            env.pop("REDIS_URL")
        return env

    def start_worker(self, name: str | None = None, *, via_pg_proxy: bool = False,
                     queues: tuple[str, ...] = ("bulk", "trigger", "default")) -> Worker:
        name = name or f"w{len(self.workers) + 1}"
        worker = Worker(name=name, env=self.worker_env(via_pg_proxy=via_pg_proxy),
                        log_path=self.tmp / f"worker-{name}.log", queues=queues)
        self.workers.append(worker)
        return worker.start()

    def flush_broker(self) -> None:
        """FLUSHDB on the test Redis db (F4; and between tests), or empty the filesystem queue."""
        if self.redis_url:
            import redis

            redis.Redis.from_url(self.redis_url, socket_timeout=3).flushdb()
        else:
            queue = self.var_dir / "celery" / "queue"
            if queue.is_dir():
                for f in queue.iterdir():
                    with contextlib.suppress(OSError):
                        f.unlink()

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- worker {w.name} (alive={w.alive}) {w.log_path}\n{w.log_tail(lines)}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for proxy in (self.redis_proxy, self.pg_proxy):
            if proxy is not None:
                proxy.stop()
        self.smtp.stop()


def _point_celery_at(url: str | None) -> Any:
    """Publish through `url` from now on (None: back to the configured broker). Returns the old URL."""
    from cdp.celery import app

    old = app.conf.broker_url
    app.conf.broker_url = url or old
    # Celery caches its connection and producer pools; new ones are made for the new URL.
    with contextlib.suppress(Exception):
        if app._pool is not None:
            app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    return old


@pytest.fixture
def stack(transactional_db: Any, settings: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    from django.db import connection

    from cdp.celery import app

    smtp = FaultSmtp().start()
    redis_url = settings.REDIS_URL or ""
    s = Stack(smtp=smtp, tmp=tmp_path, db=dict(connection.settings_dict), redis_url=redis_url,
              var_dir=Path(settings.VAR_DIR), secret_key=settings.SECRET_KEY, media_root=Path(settings.MEDIA_ROOT))
    # In-process sends (a trigger sent right away by the web process) go to the same server.
    smtp_backend = {"BACKEND": "delivery.backends.smtp.SmtpBackend",
                    "OPTIONS": {"host": smtp.host, "port": smtp.port, "tls": "none", "timeout": 10}}
    settings.DELIVERY_BACKENDS = {"default": smtp_backend, "email": smtp_backend}
    # The workers' values (worker_settings): the sweeper and the kick run here.
    from tests.faults import worker_settings

    for name in ("MAILINGS_HANDOUT_LEASE", "MAILINGS_CLAIM_LEASE", "MAILINGS_BACKOFF_BASE", "MAILINGS_BACKOFF_CAP"):
        setattr(settings, name, getattr(worker_settings, name))
    s.flush_broker()
    app.conf.task_always_eager = False
    old_broker = None
    if redis_url:
        from urllib.parse import urlsplit

        parts = urlsplit(redis_url)
        s.redis_proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).up()
        old_broker = _point_celery_at(s.redis_proxy.url_for(redis_url))
    try:
        yield s
    finally:
        failed = request.node.stash.get(_FAILED, False)
        if failed:
            print(s.logs())  # shown with the failure
        s.close()
        if old_broker is not None:
            _point_celery_at(old_broker)
        with contextlib.suppress(Exception):
            s.flush_broker()
        app.conf.task_always_eager = True
        if not failed:
            shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def world(stack: Stack, acme: Any, alice: Any) -> Any:
    """Acme's shop: database, resource, verified sending domain with DKIM, sender, template."""
    from tests.faults.stack import make_world

    return make_world(acme, alice)
