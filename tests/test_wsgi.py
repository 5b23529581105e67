"""cdp.wsgi warms the process up at import (the Procfile runs gunicorn with --preload): every view
and API module is imported and the URL resolver built before the first request, and no database
connection is left open to be shared across gunicorn's fork."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
import cdp.wsgi
from django.db import connections
from django.urls import get_resolver
assert callable(cdp.wsgi.application)
missing = [m for m in ("mailings.views", "scenarios.views", "profiles.views", "cdp.api") if m not in sys.modules]
assert not missing, f"not imported at import of cdp.wsgi: {missing}"
assert get_resolver()._populated, "the URL resolver's maps were not built"
open_ = [c.alias for c in connections.all(initialized_only=True) if c.connection is not None]
assert not open_, f"database connections left open before the fork: {open_}"
print("warm")
"""


def test_importing_the_wsgi_module_warms_the_process_without_an_open_connection() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cdp.settings"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("warm")
