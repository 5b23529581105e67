"""Production settings (DEBUG=0), loaded in a fresh process the way gunicorn and the workers load
them: secure cookies, HSTS, HTTPS redirect with the probes exempt, and a log format that fails
fast when mistyped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRINT = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({k: getattr(s, k, None) for k in (
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "SECURE_REDIRECT_EXEMPT", "SECURE_PROXY_SSL_HEADER", "DEBUG")}
    | {"formatter": s.LOGGING["handlers"]["console"]["formatter"],
       "first_middleware": s.MIDDLEWARE[0]}))
"""


def _settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT")}
    environment.update({"DJANGO_SETTINGS_MODULE": "cdp.settings", "CDP_VAR_DIR": str(tmp_path), **env})
    return subprocess.run([sys.executable, "-c", PRINT], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=60)


def test_it_makes_cookies_secure_and_exempts_only_the_probes_from_https_in_production(tmp_path):
    done = _settings(tmp_path, DEBUG="0", SECRET_KEY="x" * 60, ALLOWED_HOSTS="cdp.example.com", LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["DEBUG"] is False
    assert got["SESSION_COOKIE_SECURE"] is True and got["CSRF_COOKIE_SECURE"] is True
    assert got["SESSION_COOKIE_HTTPONLY"] is True and got["SECURE_SSL_REDIRECT"] is True
    assert got["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert got["formatter"] == "json" and got["first_middleware"] == "cdp.ops.middleware.RequestIdMiddleware"
    exempt = [re.compile(p) for p in got["SECURE_REDIRECT_EXEMPT"]]
    # SecurityMiddleware matches the path without its leading slash.
    for path in ("healthz", "readyz", "metrics"):
        assert any(p.search(path) for p in exempt), path
    for path in ("", "ops/status", "api/v1/profiles", "healthz/x", "metrics-x"):
        assert not any(p.search(path) for p in exempt), path


def test_it_keeps_text_logs_in_development_and_refuses_an_unknown_log_format(tmp_path):
    done = _settings(tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["DEBUG"] is True and got["formatter"] == "text" and got["SESSION_COOKIE_SECURE"] is False
    bad = _settings(tmp_path, LOG_FORMAT="yaml")
    assert bad.returncode != 0 and "LOG_FORMAT must be 'text' or 'json'" in bad.stderr
