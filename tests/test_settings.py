"""Production settings: required variables, and `check --deploy` with no warnings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_production_mode_passes_check_deploy_without_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING",
                     DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="cdp.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_mode_requires_a_secret_key():
    result = _manage("check", DEBUG="0", ALLOWED_HOSTS="cdp.example.com")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_mode_requires_allowed_hosts():
    result = _manage("check", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode != 0 and "ALLOWED_HOSTS must be set" in result.stderr


def test_the_embedded_default_uses_sqlite_wal_and_a_serverless_broker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    env["CDP_VAR_DIR"] = str(tmp_path)
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='cdp.settings'; django.setup();"
        "from django.conf import settings as s; from django.db import connection as c;"
        "cur=c.cursor(); cur.execute('PRAGMA journal_mode'); print(cur.fetchone()[0]);"
        "print(s.DATABASES['default']['OPTIONS']['transaction_mode']); print(s.CELERY_BROKER_URL)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["wal", "IMMEDIATE", "filesystem://"]


def test_static_files_collect_under_production_settings(tmp_path):
    """The manifest storage refuses dangling references (e.g. a vendored file's source map)."""
    result = _manage("collectstatic", "--noinput", "-v0", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50),
                     ALLOWED_HOSTS="cdp.example.com", STATIC_ROOT=str(tmp_path / "static"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()
