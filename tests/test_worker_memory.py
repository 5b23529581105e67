"""A Celery worker's memory (issue 8: peak RSS <= 150 MB): it starts without importing the URLconf
(its start-up checks skip the "urls" tag) and reverses with cdp.urls_pages, every route but the
API's, so the API's routers and schemas never load in it; the links it builds are the site's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from cdp.celery import WORKER_URLCONF

ROOT = Path(__file__).resolve().parent.parent


def _routes(patterns: list, prefix: str = "", namespace: str = "") -> dict[str, str]:
    """{qualified name: route} of every named pattern."""
    out: dict[str, str] = {}
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            out.update(_routes(p.url_patterns, prefix + str(p.pattern), ns))
        elif isinstance(p, URLPattern) and p.name:
            out.setdefault(namespace + p.name, prefix + str(p.pattern))
    return out


def test_the_worker_urlconf_is_the_site_without_the_api():
    site = _routes(get_resolver("cdp.urls").url_patterns)
    worker = _routes(get_resolver(WORKER_URLCONF).url_patterns)
    assert worker and {name: site.get(name) for name in worker} == worker
    assert {name for name in site if name not in worker} == {
        name for name in site if name.startswith("api:") or name == "api_not_found"}
    for name, args in (("tracking:click", ["Tok-en_1"]), ("tracking:open", ["Tok-en_1"]), ("dashboard", [])):
        assert reverse(name, args=args, urlconf=WORKER_URLCONF) == reverse(name, args=args, urlconf="cdp.urls")


_PROBE = """
import json, sys
from cdp.celery import app, worker_urlconf
app.loader.import_default_modules()  # what a worker does first: Django set up, checks, tasks
started = sorted(m for m in ("cdp.urls", "cdp.urls_pages", "cdp.api.v1") if m in sys.modules)
worker_urlconf()
from django.urls import reverse
from history.tracking import ClickLinks
ClickLinks()  # a batch's links: reverses the tracking routes
reverse("accounts:invitation_accept", args=["k"])
print(json.dumps({"started": started, "api": "cdp.api.v1" in sys.modules, "urls": "cdp.urls" in sys.modules}))
"""


def test_a_worker_starts_and_reverses_without_the_api():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cdp.settings"}
    env.pop("CELERY_SKIP_CHECKS", None)
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"started": [], "api": False, "urls": False}, seen
